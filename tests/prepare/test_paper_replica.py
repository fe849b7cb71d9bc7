"""The paper replica: determinism, planted quirks counted from the files themselves, prompts,
features that carry the events, and the `uniav download` round trip."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from uniav.cli import main as uniav_main
from uniav.config import load_config
from uniav.data.features import FeatureStore, layout_of
from uniav.errors import ConfigError, InputError
from uniav.prepare.paper_replica import write_paper_replica
from uniav.prepare.replica_plan import DATASETS, SIZES, plan_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 11
DIM = 1536
FPS, WINDOW = 16, 16
SUFFIXES = {"visual": "_one_peace_video_finetune", "audio": "_one_peace_audio"}
# written independently of the generator: what the brief and params.yaml say
EXPECTED = {
    "tal": dict(folder="activitynet13", annotations="anet1.3_all.json",
                archives={"av_features.tar.gz": ("visual", "audio")}, prompt="anet_prompt.npy",
                classes=200, stride=8, prefix="v_", train="training", test="validation",
                subsets={"training", "validation", "testing"}),
    "sed": dict(folder="desed", annotations="dcase_all.json",
                archives={"desed_onepeace_audio_features.tar.gz": ("audio",),
                          "desed_onepeace_visual_features.tar.gz": ("visual",)},
                prompt="dcase_prompt.npy", classes=10, stride=4, prefix="", train="validation",
                test="public_eval", subsets={"validation", "public_eval"}),
    "avel": dict(folder="unav100", annotations="unav100_all.json",
                 archives={"av_features.tar.gz": ("visual", "audio")}, prompt="unav100_prompt.npy",
                 classes=100, stride=4, prefix="", train="train", test="test",
                 subsets={"train", "validation", "test"}),
}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


_ARCHIVE_CACHE: dict[tuple[Path, str], dict[str, np.ndarray]] = {}


def read_archives(root: Path, task: str) -> dict[str, np.ndarray]:
    """File name -> array, from the task's archives (members read directly, not unpacked)."""
    if (root, task) in _ARCHIVE_CACHE:
        return _ARCHIVE_CACHE[(root, task)]
    arrays = _ARCHIVE_CACHE.setdefault((root, task), {})
    for name in EXPECTED[task]["archives"]:
        with tarfile.open(root / "downloads" / EXPECTED[task]["folder"] / name) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    data = tar.extractfile(member).read()
                    arrays[member.name.rsplit("/", 1)[-1]] = np.load(io.BytesIO(data))
    return arrays


def nominal_steps(duration: float, stride: int) -> int:
    return (math.floor(duration * FPS + 1e-6) - WINDOW) // stride + 1


def feature_end(steps: int, stride: int) -> float:
    return ((steps - 1) * stride + WINDOW) / FPS


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("replica") / "R"
    return root, write_paper_replica(root, seed=SEED)


@pytest.fixture(scope="module")
def downloaded(replica, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the replica after `uniav download` (subprocess) with the shipped params.yaml
    unchanged (offline: every entry's first source is a file of the replica), and that file."""
    source, _ = replica
    work = tmp_path_factory.mktemp("download")
    root = work / "R"
    shutil.copytree(source, root, copy_function=os.link)  # download only reads its sources
    config = REPO_ROOT / "params.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "uniav", "download", "--no-progress", "--config", str(config),
         "--set", "benchmark=paper", "--set", f"datasets.paper.root={root}",
         "--pin-unknown-checksums"], cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lock = json.loads((root / "checksums.lock.json").read_text())["entries"]
    assert lock["anet_prompt"]["url"] == "downloads/activitynet13/anet_prompt.npy"  # no mirror
    return root, config


def test_same_seed_gives_byte_identical_files(replica, tmp_path):
    root, summary = replica
    again = write_paper_replica(tmp_path / "R", seed=SEED)
    assert again == summary
    first, second = tree_bytes(root), tree_bytes(tmp_path / "R")
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)
    archive = root / "downloads" / "activitynet13" / "av_features.tar.gz"
    assert archive.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (members[0].mtime, 0, 0, "", "")}


def test_files_and_schema(replica):
    root, summary = replica
    expected_files = set()
    for task, spec in EXPECTED.items():
        folder = f"downloads/{spec['folder']}"
        expected_files |= {f"{folder}/{spec['annotations']}", f"{folder}/{spec['prompt']}"}
        expected_files |= {f"{folder}/{name}" for name in spec["archives"]}
    assert set(tree_bytes(root)) == expected_files | {"replica.json"}
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    manifest = params["datasets"]["paper"]["manifest"]
    local = {entry["url"] for entry in manifest}
    assert len(local) == 10 and local <= expected_files  # the names the manifest expects first
    mirrored = {entry["name"] for entry in manifest if entry.get("mirrors")
                and all(url.startswith("https://") for url in entry["mirrors"])}
    assert mirrored == {"anet_prompt", "desed_prompt", "unav100_prompt"}  # fetched if not saved
    assert json.loads((root / "replica.json").read_text()) == summary
    for task, spec in EXPECTED.items():
        data = json.loads((root / "downloads" / spec["folder"] / spec["annotations"]).read_text())
        assert set(data) >= {"version", "database"}
        ids = {}
        for video_id, video in data["database"].items():
            assert video["subset"] in spec["subsets"] and video["duration"] > 0
            assert not video_id.startswith("v_")
            if video["subset"] == "testing":
                assert video["annotations"] == []
            for ann in video["annotations"]:
                assert len(ann["segment"]) == 2 and ids.setdefault(ann["label"], ann["label_id"]) \
                    == ann["label_id"]
        assert sorted(ids.values()) == list(range(spec["classes"])) == list(
            range(summary["classes"][task]))
        if task == "sed":
            assert set(ids) == {"Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog",
                                "Electric_shaver_toothbrush", "Frying", "Running_water", "Speech",
                                "Vacuum_cleaner"}
            assert {v["duration"] for v in data["database"].values()} == {10.0}
        prompt = np.load(root / "downloads" / spec["folder"] / spec["prompt"])
        assert prompt.shape == (spec["classes"], DIM) and prompt.dtype == np.float32
        counts = summary["counts"][task]
        assert set(counts) == spec["subsets"]
        for subset, numbers in counts.items():
            listed = [v for v in data["database"].values() if v["subset"] == subset]
            assert numbers["videos"] == len(listed)
            assert numbers["annotations"] == sum(len(v["annotations"]) for v in listed)


def test_planted_quirks_equal_what_is_in_the_files(replica):
    root, summary = replica
    for task, spec in EXPECTED.items():
        data = json.loads((root / "downloads" / spec["folder"] / spec["annotations"]).read_text())
        arrays = read_archives(root, task)
        assert all(a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == DIM
                   for a in arrays.values())
        stride = spec["stride"]
        for subset in spec["subsets"]:
            found = {quirk: [] for quirk in summary["planted"][task][subset]}
            differences, annotations = {}, Counter()
            for video_id, video in data["database"].items():
                if video["subset"] != subset:
                    continue
                name = {m: f"{spec['prefix']}{video_id}{s}.npy" for m, s in SUFFIXES.items()}
                segments = [tuple(a["segment"]) + (a["label"],) for a in video["annotations"]]
                quirks = []
                if not any(n in arrays for n in name.values()):
                    quirks.append("missing_features")
                    annotations["missing_features"] += len(segments)
                else:
                    visual, audio = (len(arrays[name[m]]) for m in ("visual", "audio"))
                    nominal = nominal_steps(video["duration"], stride)
                    end = feature_end(visual, stride)
                    if audio != visual:
                        quirks.append("av_length_mismatch")
                        differences[video_id] = audio - visual
                        assert 1 <= abs(audio - visual) <= 3 and visual == nominal
                    elif visual != nominal:
                        assert 0.10 <= 1 - visual / nominal <= 0.25
                        past = [s for s in segments if s[0] > end]
                        quirks.append("past_features" if past else "features_short")
                        assert all(s[1] <= end for s in segments if s not in past)
                        annotations["past_features"] += len(past)
                zero = [s for s in segments if s[0] == s[1]]
                repeated = len(segments) - len(set(segments))
                beyond = [s for s in segments if s[1] > video["duration"]]
                assert all(0.1 - 1e-6 <= s[1] - video["duration"] <= 0.5 + 1e-6 for s in beyond)
                for quirk, number in (("zero_length", len(zero)), ("duplicate", repeated),
                                      ("past_duration", len(beyond))):
                    if number:
                        quirks.append(quirk)
                        annotations[quirk] += number
                assert len(quirks) <= 1, (video_id, quirks)  # each quirk on its own videos
                for quirk in quirks:
                    found[quirk].append(video_id)
            for quirk, record in summary["planted"][task][subset].items():
                assert record["videos"] == len(found[quirk]), (task, subset, quirk)
                assert set(record["video_ids"]) == set(found[quirk]), (task, subset, quirk)
                if "annotations" in record:
                    assert record["annotations"] == annotations[quirk], (task, subset, quirk)
            mismatch = summary["planted"][task][subset]["av_length_mismatch"]
            assert dict(zip(mismatch["video_ids"], mismatch["audio_minus_visual_steps"])) \
                == differences
            with_features = summary["counts"][task][subset]["videos_with_features"]
            assert with_features == summary["counts"][task][subset]["videos"] - len(
                found["missing_features"])
            if subset in (spec["train"], spec["test"]):
                assert all(found[q] for q in found if q != "past_features")
            else:
                assert not any(found.values())
        assert bool(summary["planted"][task][spec["train"]]["past_features"]["videos"]) \
            == (task == "tal")
        differences_used = set()
        for subset in (spec["train"], spec["test"]):
            differences_used |= set(summary["planted"][task][subset]["av_length_mismatch"]
                                    ["audio_minus_visual_steps"])
        assert differences_used == {-3, -2, -1, 1, 2, 3}


def test_features_carry_the_events_along_the_prompt_directions(replica):
    root, _ = replica
    for task, spec in EXPECTED.items():
        data = json.loads((root / "downloads" / spec["folder"] / spec["annotations"]).read_text())
        prompts = np.load(root / "downloads" / spec["folder"] / spec["prompt"])
        arrays = read_archives(root, task)
        carrier = {"tal": "visual", "sed": "audio", "avel": "visual"}[task]
        other = {"tal": "audio", "sed": "visual", "avel": "audio"}[task]
        inside, outside, silent = [], [], []
        for video_id, video in list(data["database"].items())[:12]:
            name = f"{spec['prefix']}{video_id}{SUFFIXES[carrier]}.npy"
            other_name = name.replace(SUFFIXES[carrier], SUFFIXES[other])
            if name not in arrays or arrays[name].shape != arrays[other_name].shape:
                continue
            features = arrays[name]
            centres = (np.arange(len(features)) * spec["stride"] + WINDOW / 2) / FPS
            for ann in video["annotations"]:
                t0, t1 = ann["segment"]
                steps = (centres >= t0 + 0.3) & (centres <= t1 - 0.3)
                others = ~((centres >= t0 - 0.5) & (centres <= t1 + 0.5))
                if steps.any() and others.any():
                    projection = features @ prompts[ann["label_id"]]
                    inside.append(projection[steps].mean())
                    outside.append(projection[others].mean())
                    silent.append((arrays[other_name] @ prompts[ann["label_id"]])[steps].mean())
        assert len(inside) >= 5
        assert min(np.subtract(inside, outside)) > 5.0
        if task == "avel":  # both modalities carry the event
            assert min(silent) > 5.0
        else:
            assert abs(np.mean(silent)) < 2.0


def test_download_round_trip_puts_everything_where_the_config_says(replica, downloaded):
    _, summary = replica
    root, params = downloaded
    # the task paths are relative to datasets.paper.root: one setting moves the benchmark
    config = load_config(params, ["benchmark=paper", f"datasets.paper.root={root}"])
    for task, spec in EXPECTED.items():
        task_config = config.datasets.paper.tasks[task]
        annotations = Path(task_config.annotations)
        features = Path(task_config.features)
        prompt = Path(config.datasets.paper.prompts[task])
        assert root in annotations.parents and root in features.parents and root in prompt.parents
        source = root / "downloads" / spec["folder"]
        assert annotations.read_bytes() == (source / spec["annotations"]).read_bytes()
        assert np.load(prompt).shape == (spec["classes"], DIM)
        database = json.loads(annotations.read_text())["database"]
        missing = {v for subset in summary["planted"][task].values()
                   for v in subset["missing_features"]["video_ids"]}
        expected = {f"{task_config.id_prefix}{video_id}{suffix}.npy" for video_id in database
                    if video_id not in missing
                    for suffix in (task_config.visual_suffix, task_config.audio_suffix)}
        assert set(os.listdir(features)) == expected
        assert FeatureStore(features, layout_of(task_config)).video_ids() == set(database) - missing


def test_unpacked_layout_is_what_download_leaves(downloaded, tmp_path):
    root, _ = downloaded
    unpacked = tmp_path / "U"
    summary = write_paper_replica(unpacked, seed=SEED, layout="unpacked")
    assert summary["layout"] == "unpacked"
    written = tree_bytes(unpacked)
    after_download = tree_bytes(root)
    assert set(written) == {name for name in after_download
                            if "/annotations/" in name or "/av_features/" in name
                            or name.endswith("_prompt.npy") and not name.startswith("downloads/")
                            } | {"replica.json"}
    assert all(written[name] == after_download[name] for name in written if name != "replica.json")


def test_other_seed_differs_and_feature_pool_hard_links(replica, tmp_path):
    root, summary = replica
    stale = tmp_path / "P" / "desed" / "av_features" / "Ystale_one_peace_audio.npy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (tmp_path / "P" / "keep.txt").write_text("not the replica's")
    other = write_paper_replica(tmp_path / "P", seed=SEED + 1, layout="unpacked", feature_pool=1,
                                force=True)
    assert not stale.exists() and (tmp_path / "P" / "keep.txt").exists()
    assert other["counts"] != summary["counts"] or other["planted"] != summary["planted"]
    for spec in EXPECTED.values():
        ours = (root / "downloads" / spec["folder"] / spec["annotations"]).read_bytes()
        theirs = (tmp_path / "P" / spec["folder"] / "annotations"
                  / spec["annotations"]).read_bytes()
        assert ours != theirs
        inodes: dict[tuple[str, int], set[int]] = {}
        for path in (tmp_path / "P" / spec["folder"] / "av_features").iterdir():
            modality = "audio" if path.name.endswith("_audio.npy") else "visual"
            shape = np.load(path, mmap_mode="r").shape
            inodes.setdefault((modality, shape[0]), set()).add(path.stat().st_ino)
        assert all(len(found) == 1 for found in inodes.values())
    sed_files = list((tmp_path / "P" / "desed" / "av_features").iterdir())
    assert max(path.stat().st_nlink for path in sed_files) > 10  # 10 s clips share one length


def test_real_size_plans_the_released_counts():
    real = SIZES["real"]
    assert real["tal"].videos == {"training": 10024, "validation": 4926, "testing": 5044}
    assert np.mean(real["tal"].duration_seconds) == pytest.approx(117)
    assert sum(real["avel"].videos.values()) == 10790
    assert all(size.quirks_included for size in real.values())
    desed = plan_dataset(DATASETS[1], real["sed"], SEED)  # the quick one to plan
    assert Counter(v.subset for v in desed) == {"validation": 1168, "public_eval": 692}
    # clips with features as reported by users of the DESED share: 975 + 564
    assert sum(bool(v.steps) for v in desed) == 975 + 564


def test_bad_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="seed"):
        write_paper_replica(tmp_path / "a", seed=-1)
    with pytest.raises(ConfigError, match="feature_pool"):
        write_paper_replica(tmp_path / "a", feature_pool=0)
    with pytest.raises(ConfigError, match="size"):
        write_paper_replica(tmp_path / "a", size="huge")
    for argv, message in ((["--seed", "-1"], "--seed: expected an integer >= 0"),
                          (["--feature-pool", "0"], "--feature-pool: expected an integer >= 1"),
                          (["--size", "huge"], "--size: invalid choice")):
        with pytest.raises(SystemExit) as exited:  # argparse: usage and message, exit 2
            uniav_main(["paper-replica", str(tmp_path / "b"), *argv])
        assert exited.value.code == 2
        assert message in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        write_paper_replica(tmp_path / "c")
    assert uniav_main(["paper-replica", str(tmp_path / "c")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
