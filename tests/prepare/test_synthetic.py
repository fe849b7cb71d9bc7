"""The synthetic benchmark generator: sizes, format, determinism, distractors, idempotency."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from uniav.prepare import synthetic
from uniav.data.annotations import load_annotations
from uniav.prepare.media import decode_media
from uniav.prepare.synthetic import render_video, synthesize_task
from uniav.prepare.synthetic_plan import RECIPES, plan_task, task_classes

# scales.tiny overrides datasets.synthetic.videos, so sizes are set inside the tiny scale
SMALL_SED = "scales.tiny.datasets.synthetic.videos.sed={train: 2, validation: 1, test: 1}"
#: a training batch that such a small training subset can fill (checked with the configuration)
ONE_PER_BATCH = "scales.tiny.train.batch_size.sed=1"


def _intervals_overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_synth_annotations_load_with_sizes_subsets_and_shapes(synth_benchmark):
    config = synth_benchmark
    for task in ("tal", "sed", "avel"):
        data = config.datasets.synthetic.tasks[task]
        sizes = config.datasets.synthetic.videos[task]
        recipe = RECIPES[task]
        db = load_annotations(data.annotations)
        assert db.classes == task_classes(task)
        for split in ("train", "validation", "test"):
            subset = getattr(data.subsets, split)
            assert len(db.subset(subset)) == getattr(sizes, split)
        for video in db.videos.values():
            assert video.fps == 16
            assert recipe.duration[0] - 0.1 <= video.duration <= recipe.duration[1] + 0.1
            assert recipe.events[0] <= len(video.labels) <= recipe.events[1]
            assert (video.segments[:, 1] > video.segments[:, 0]).all()
            assert video.segments.min() >= 0 and video.segments.max() <= video.duration
            assert (Path(data.media) / f"{video.video_id}.mp4").is_file()
            if not recipe.overlap:  # tal and avel instances never overlap in time
                order = np.argsort(video.segments[:, 0])
                starts, ends = video.segments[order, 0], video.segments[order, 1]
                assert (starts[1:] >= ends[:-1]).all()
    # sed clips are 10 s and some instances overlap (different classes only)
    sed = load_annotations(config.datasets.synthetic.tasks["sed"].annotations)
    overlapping_pairs = 0
    for video in sed.videos.values():
        assert video.duration == 10.0
        for i in range(len(video.labels)):
            for j in range(i):
                if _intervals_overlap(video.segments[i], video.segments[j]):
                    overlapping_pairs += 1
                    assert video.labels[i] != video.labels[j]
    assert overlapping_pairs > 0


def test_synth_avel_distractors_exist_are_not_annotated_and_use_one_modality(synth_benchmark):
    config = synth_benchmark
    data = config.datasets.synthetic.tasks["avel"]
    raw = json.loads(Path(data.annotations).read_text())["database"]
    db = load_annotations(data.annotations)
    modalities = set()
    for video_id, entry in raw.items():
        distractors = entry["distractors"]
        assert len(distractors) >= 1
        for item in distractors:
            modalities.add(item["modality"])
            assert item["label"] in db.classes
            for segment in db.videos[video_id].segments:
                assert not _intervals_overlap(item["segment"], segment)
        # distractors are not part of what load_annotations returns
        assert len(db.videos[video_id].labels) == len(entry["annotations"])
    assert modalities == {"visual", "audio"}

    # rendered: an audible-only distractor raises the audio above the background; a visible-only
    # one does not, while it does change the picture
    media = config.datasets.synthetic.media
    checked = {"visual": 0, "audio": 0}
    for plan in plan_task(config, "avel")[:6]:
        frames, audio = render_video("avel", plan, media)
        busy = np.zeros(plan.num_frames, dtype=bool)
        for inst in plan.instances:
            busy[inst.start:inst.end] = True
        quiet_audio = np.concatenate([audio[f * 1000:(f + 1) * 1000]  # 1000 samples per frame
                                      for f in np.flatnonzero(~busy)])
        quiet_rms = np.sqrt(np.mean(quiet_audio ** 2))
        for inst in plan.instances:
            if inst.annotated:
                continue
            span_audio = audio[inst.start * 1000:inst.end * 1000]
            span_rms = np.sqrt(np.mean(span_audio ** 2))
            saturation = (frames[inst.start:inst.end].max(-1).astype(int)
                          - frames[inst.start:inst.end].min(-1)).mean()
            quiet_saturation = (frames[~busy].max(-1).astype(int) - frames[~busy].min(-1)).mean()
            if inst.modalities == ("audio",):
                assert span_rms > 1.5 * quiet_rms
            else:
                assert span_rms < 1.5 * quiet_rms
                assert saturation > quiet_saturation + 3
            checked[inst.modalities[0]] += 1
    assert checked["visual"] and checked["audio"]


def test_synth_same_seed_same_data_other_seed_other_data(tmp_path, synth_make_config):
    first = synth_make_config(tmp_path / "a", SMALL_SED, ONE_PER_BATCH)
    again = synth_make_config(tmp_path / "b", SMALL_SED, ONE_PER_BATCH)
    other = synth_make_config(tmp_path / "c", SMALL_SED, ONE_PER_BATCH, "datasets.synthetic.seed=8")
    documents, stats = [], []
    for config in (first, again, other):
        path = synthesize_task(config, "sed", progress=False)
        document = json.loads(path.read_text())
        documents.append(document["database"])
        video = sorted(document["database"])[0]
        media = decode_media(Path(config.datasets.synthetic.tasks["sed"].media) / f"{video}.mp4")
        stats.append(np.array([media.frames.mean(), media.frames.std(), media.audio.mean(),
                               media.audio.std(), np.abs(media.audio).max()]))
    assert documents[0] == documents[1]
    np.testing.assert_array_equal(stats[0], stats[1])
    assert documents[0] != documents[2]
    assert not np.allclose(stats[0], stats[2])


def test_synth_video_does_not_depend_on_the_other_videos(synth_make_config, tmp_path):
    small = synth_make_config(tmp_path, SMALL_SED, ONE_PER_BATCH)
    large = synth_make_config(tmp_path, "scales.tiny.datasets.synthetic.videos.sed={train: 5, "
                                        "validation: 1, test: 1}")
    plan_small, plan_large = plan_task(small, "sed")[1], plan_task(large, "sed")[1]
    assert plan_small == plan_large
    frames_a, audio_a = render_video("sed", plan_small, small.datasets.synthetic.media)
    frames_b, audio_b = render_video("sed", plan_large, large.datasets.synthetic.media)
    np.testing.assert_array_equal(frames_a, frames_b)
    np.testing.assert_array_equal(audio_a, audio_b)


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_synth_keeps_complete_outputs_and_resumes(tmp_path, synth_make_config, monkeypatch):
    config = synth_make_config(tmp_path, SMALL_SED, ONE_PER_BATCH)
    data = config.datasets.synthetic.tasks["sed"]
    media_dir, annotations = Path(data.media), Path(data.annotations)
    synthesize_task(config, "sed", progress=False)
    before = _mtimes(media_dir)
    annotations_before = annotations.stat().st_mtime_ns

    rendered = []
    real_render = synthetic.render_and_write
    monkeypatch.setattr(synthetic, "render_and_write",
                        lambda *args: rendered.append(args[1].video_id) or real_render(*args))
    synthesize_task(config, "sed", progress=False)  # complete: nothing is redone
    assert rendered == [] and _mtimes(media_dir) == before
    assert annotations.stat().st_mtime_ns == annotations_before

    victim = sorted(p for p in media_dir.glob("*.mp4"))[1]
    victim.unlink()
    synthesize_task(config, "sed", progress=False)  # only the missing video is remade
    assert rendered == [victim.stem]

    rendered.clear()
    synthesize_task(config, "sed", force=True, progress=False)
    assert len(rendered) == 4

    # other settings: everything is regenerated and videos no longer planned are removed
    rendered.clear()
    fewer = synth_make_config(tmp_path, "scales.tiny.datasets.synthetic.videos.sed={train: 1, "
                                        "validation: 1, test: 1}", "datasets.synthetic.seed=11",
                              ONE_PER_BATCH)
    synthesize_task(fewer, "sed", progress=False)
    assert len(rendered) == 3
    assert len(list(media_dir.glob("*.mp4"))) == 3
    assert len(load_annotations(annotations).videos) == 3


def test_synth_interrupted_run_leaves_no_partial_file(tmp_path, synth_make_config, monkeypatch):
    config = synth_make_config(tmp_path, SMALL_SED, ONE_PER_BATCH)
    data = config.datasets.synthetic.tasks["sed"]
    media_dir, annotations = Path(data.media), Path(data.annotations)
    import uniav.prepare.media as media_module

    real_write = media_module.write_media
    calls = []

    def failing_write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            # fail while encoding: the temp file exists at this point and must be cleaned up
            with media_module.atomic_path(path) as tmp:
                tmp.write_bytes(b"half a video")
                raise KeyboardInterrupt("killed")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(media_module, "write_media", failing_write)
    with pytest.raises(KeyboardInterrupt):
        synthesize_task(config, "sed", progress=False)
    assert not annotations.exists()
    names = sorted(os.listdir(media_dir))
    assert names == [".synthetic.json", Path(calls[0]).name, Path(calls[1]).name]
    monkeypatch.setattr(media_module, "write_media", real_write)
    rendered = []
    real_render = synthetic.render_and_write
    monkeypatch.setattr(synthetic, "render_and_write",
                        lambda *args: rendered.append(args[1].video_id) or real_render(*args))
    synthesize_task(config, "sed", progress=False)
    assert len(rendered) == 2  # the two finished videos were kept
    assert len(load_annotations(annotations).videos) == 4
