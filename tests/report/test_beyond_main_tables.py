"""The tables beyond the main one (open set, cross-task, pre-training) on hand-written metrics
and cross-task files, with the default synthetic configuration of params.yaml."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from tests.report.test_tables import SED_T, TAL_T, _markdown_rows, _task
from uniav.config import experiment_runs, load_config
from uniav.data.concepts import cross_task_pairs
from uniav.errors import InputError
from uniav.report.seeds import aggregate_runs
from uniav.report.tables import (ExtraColumn, GroupColumn, build_tables, cross_task_experiments,
                                 cross_task_path, load_cross_task, table_experiments, table_names,
                                 tables_settings, write_tables)

REPO_ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = {"tal": TAL_T, "sed": SED_T, "avel": SED_T}

#: (seen, novel) average mAP of each open-set experiment's tasks (None: no novel ground truth).
OPEN_SET = {
    "open_set_single_tal": {"tal": (0.40, 0.10)},
    "open_set_single_sed": {"sed": (0.50, 0.20)},
    "open_set_single_avel": {"avel": (0.60, 0.30)},
    "open_set_naive_multi": {"tal": (0.30, 0.05), "sed": (0.35, 0.15), "avel": (0.45, 0.25)},
    "open_set_uniav": {"tal": (0.42, 0.12), "sed": (0.52, None), "avel": (0.62, 0.32)},
}
#: Main-table-like metrics: base mAP per experiment (the task's mAP at threshold i = base - i/100).
BASE = {"single_tal": 0.50, "single_sed": 0.60, "single_avel": 0.70, "naive_multi": 0.45,
        "uniav": 0.55, "linear_cls": 0.35, "finetune_tal": 0.52, "finetune_sed": 0.62,
        "finetune_avel": 0.72}
#: Cross-task: own average mAP = base + 0.01 * (index of the pair), cross = own - 0.30.
CROSS_BASE = {"single_tal": 0.40, "single_sed": 0.40, "single_avel": 0.40, "naive_multi": 0.45,
              "uniav": 0.50}


def _config(*overrides: str):
    return load_config(REPO_ROOT / "params.yaml", list(overrides))


def _flat(thresholds: list[float], value: float | None) -> dict:
    return {"thresholds": thresholds, "mAP": None if value is None else [value] * len(thresholds),
            "average_mAP": value}


def _open_set_task(task: str, seen: float, novel: float | None) -> dict:
    thresholds = THRESHOLDS[task]
    data = _task(thresholds, seen)
    data["class_groups"] = {
        "seen": {"classes": ["A"], "classes_with_ground_truth": ["A"], **_flat(thresholds, seen)},
        "novel": {"classes": ["B"], "classes_with_ground_truth": [] if novel is None else ["B"],
                  **_flat(thresholds, novel)}}
    return data


def _cross_task(config, experiment: str, offset: float = 0.0, protocol: str = "clean") -> dict:
    pairs = {}
    for index, pair in enumerate(cross_task_pairs(config)):
        if pair.task not in config.experiments[experiment].tasks:
            continue
        own = CROSS_BASE[experiment] + 0.01 * index + offset
        thresholds = THRESHOLDS[pair.task]
        pairs[pair.key] = {"task": pair.task, "names_from": pair.names_from,
                           "classes": dict(pair.classes),
                           "own": {**_flat(thresholds, own), "per_class": {}},
                           "cross": {**_flat(thresholds, round(own - 0.30, 6)), "per_class": {}}}
    return {"experiment": experiment, "split": "test", "benchmark": "synthetic",
            "protocol": protocol, "weights": f"results/models/{experiment}/model.safetensors",
            "pairs": pairs}


def _write(config, directory: Path, offsets: dict[int, float] | None = None) -> None:
    """Every file the tables read, per seed: metrics (offset added to every value; the open-set
    novel values get twice the offset) and cross-task files."""
    directory.mkdir(parents=True, exist_ok=True)
    offsets = offsets or {config.seed: 0.0}
    for name in table_experiments(config):
        for run, seed in experiment_runs(config, name):
            offset = offsets[seed]
            if name in OPEN_SET:
                tasks = {t: _open_set_task(t, seen + offset,
                                           None if novel is None else novel + 2 * offset)
                         for t, (seen, novel) in OPEN_SET[name].items()}
            else:
                tasks = {t: _task(THRESHOLDS[t], BASE[name] + offset)
                         for t in config.experiments[name].tasks}
            (directory / f"{run}.json").write_text(json.dumps(
                {"experiment": name, "split": "test", "protocol": "clean", "tasks": tasks}))
    for name in cross_task_experiments(config):
        for run, seed in experiment_runs(config, name):
            cross_task_path(directory, run).write_text(json.dumps(
                _cross_task(config, name, offsets[seed])))


@pytest.fixture
def written(tmp_path: Path) -> Path:
    config = _config()
    _write(config, tmp_path / "metrics")
    paths = write_tables(config, tmp_path / "metrics", tmp_path / "tables")
    assert sorted(p.name for p in paths) == sorted(
        f"{name}.{suffix}"
        for name in ("main", "ablation", "open_set", "cross_task", "pretraining", "sed_extras")
        for suffix in ("md", "csv", "csv-metadata.json", "tex"))
    return tmp_path / "tables"


def test_table_names_and_experiments() -> None:
    config = _config()
    assert table_names(config) == ["main", "ablation", "open_set", "cross_task", "pretraining",
                                   "sed_extras"]
    experiments = table_experiments(config)
    assert {"open_set_uniav", "open_set_single_sed", "finetune_avel"} <= set(experiments)
    assert cross_task_experiments(config) == ["single_tal", "single_sed", "single_avel",
                                              "naive_multi", "uniav"]
    # without rows the tables are not written
    bare = _config("benchmarks.synthetic.tables.open_set=[]",
                   "benchmarks.synthetic.tables.cross_task=[]",
                   "benchmarks.synthetic.tables.pretraining=[]")
    assert table_names(bare) == ["main", "ablation", "sed_extras"]
    assert cross_task_experiments(bare) == []
    assert "open_set_uniav" not in table_experiments(bare)


# --------------------------------------------------------------------------------------------
# Open set
# --------------------------------------------------------------------------------------------

def test_open_set_markdown_values(written: Path) -> None:
    text = (written / "open_set.md").read_text()
    rows = _markdown_rows(text)
    assert rows[0] == ["Method", "TAL seen", "TAL novel", "TAL mean", "SED seen", "SED novel",
                       "SED mean", "AVEL seen", "AVEL novel", "AVEL mean"]
    assert rows[2] == ["Single-task", "40.00", "10.00", "25.00", "50.00", "20.00", "35.00",
                       "60.00", "30.00", "45.00"]
    assert rows[3] == ["Naive multi-task", "30.00", "5.00", "17.50", "35.00", "15.00", "25.00",
                       "45.00", "25.00", "35.00"]
    # no novel ground truth for UniAV's SED: novel and mean missing, seen shown
    assert rows[4] == ["UniAV", "42.00", "12.00", "27.00", "52.00", "–", "–", "62.00", "32.00",
                       "47.00"]
    assert len(rows) == 5
    assert "A missing value: no class of the group has a test instance" in text
    assert "not relabelled" in text and "prompting for every class" in text
    assert ("Held out: TAL: Walking the dog, Playing violin; SED: Alarm_bell_ringing, Blender; "
            "AVEL: playing violin, vacuum cleaner cleaning floors.") in text
    assert "Trained for 4 epochs (the main training: 12 epochs)." in text
    assert "Benchmark: synthetic. Split: test" in text and "TAL 0.50:0.05:0.95" in text
    assert "Protocol: clean (" in text
    assert "SED from `open_set_single_sed`" in text


def test_open_set_csv_and_latex(written: Path) -> None:
    rows = list(csv.reader(io.StringIO((written / "open_set.csv").read_text())))
    assert rows[0] == ["label", "tal seen avg mAP", "tal novel avg mAP", "tal mean avg mAP",
                       "sed seen avg mAP", "sed novel avg mAP", "sed mean avg mAP",
                       "avel seen avg mAP", "avel novel avg mAP", "avel mean avg mAP",
                       "source", "experiments"]
    assert rows[3][:7] == ["UniAV", "42.00", "12.00", "27.00", "52.00", "", ""]
    assert rows[3][-1] == "tal=open_set_uniav;sed=open_set_uniav;avel=open_set_uniav"
    tex = (written / "open_set.tex").read_text()
    assert (r"\multicolumn{3}{c}{TAL} & \multicolumn{3}{c}{SED} & \multicolumn{3}{c}{AVEL} \\"
            in tex)
    assert r"Method & seen & novel & mean & seen & novel & mean & seen & novel & mean \\" in tex
    assert r"UniAV & 42.00 & 12.00 & 27.00 & 52.00 & -- & -- & 62.00 & 32.00 & 47.00 \\" in tex
    metadata = json.loads((written / "open_set.csv-metadata.json").read_text())
    assert metadata["dc:title"] == "Open set" and "Held out: TAL" in metadata["dc:description"]


def test_open_set_without_class_groups_names_the_file(tmp_path: Path) -> None:
    config = _config()
    _write(config, tmp_path / "metrics")
    path = tmp_path / "metrics" / "open_set_naive_multi.json"
    data = json.loads(path.read_text())
    del data["tasks"]["avel"]["class_groups"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"open_set_naive_multi\.json.*tasks\.avel\.class_groups"):
        build_tables(config, tmp_path / "metrics")
    data["tasks"]["avel"] = _open_set_task("avel", 0.45, 0.25)
    data["tasks"]["avel"]["class_groups"]["novel"]["average_mAP"] = "high"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"open_set_naive_multi\.json.*novel\.average_mAP"):
        build_tables(config, tmp_path / "metrics")


# --------------------------------------------------------------------------------------------
# Cross-task
# --------------------------------------------------------------------------------------------

def test_cross_task_columns_values_and_caption(written: Path) -> None:
    text = (written / "cross_task.md").read_text()
    rows = _markdown_rows(text)
    assert rows[0] == ["Method", "TAL own (SED concepts)", "TAL SED names",
                       "TAL own (AVEL concepts)", "TAL AVEL names",
                       "SED own (TAL concepts)", "SED TAL names",
                       "SED own (AVEL concepts)", "SED AVEL names",
                       "AVEL own (TAL concepts)", "AVEL TAL names",
                       "AVEL own (SED concepts)", "AVEL SED names"]
    # pairs in order tal.sed, tal.avel, sed.tal, sed.avel, avel.tal, avel.sed (index 0..5)
    assert rows[2] == ["Single-task", "40.00", "10.00", "41.00", "11.00", "42.00", "12.00",
                       "43.00", "13.00", "44.00", "14.00", "45.00", "15.00"]
    assert rows[4] == ["UniAV", "50.00", "20.00", "51.00", "21.00", "52.00", "22.00",
                       "53.00", "23.00", "54.00", "24.00", "55.00", "25.00"]
    assert "evaluation only, no training" in text
    assert ("SED clips with AVEL names: Alarm_bell_ringing→telephone bell ringing, "
            "Cat→cat meowing, Dog→dog barking, Running_water→water burbling, "
            "Speech→man speaking, Vacuum_cleaner→vacuum cleaner cleaning floors") in text
    assert "TAL videos with SED names: Walking the dog→Dog" in text
    assert ('E.g. "SED names" under TAL: the TAL test videos scored over the TAL classes whose '
            "concepts SED names too, prompted with SED's names of them; \"own (SED concepts)\": "
            "the same videos, classes and ground truth prompted with TAL's own names.") in text
    assert "Protocol: clean (" in text and "Split: test" in text
    header = next(csv.reader(io.StringIO((written / "cross_task.csv").read_text())))
    assert header[1:3] == ["tal tal.sed own avg mAP", "tal tal.sed cross avg mAP"]
    tex = (written / "cross_task.tex").read_text()
    assert r"Cat$\rightarrow$cat meowing" in tex
    assert r"\multicolumn{4}{c}{TAL} & \multicolumn{4}{c}{SED} & \multicolumn{4}{c}{AVEL}" in tex
    assert r"Method & own (SED concepts) & SED names & own (AVEL concepts) & AVEL names" in tex


def test_cross_task_file_of_another_protocol_is_refused(tmp_path: Path) -> None:
    config = _config()
    _write(config, tmp_path / "metrics")
    path = cross_task_path(tmp_path / "metrics", "uniav")
    assert path.name == "uniav.cross_task.json"
    path.write_text(json.dumps(_cross_task(config, "uniav", protocol="released")))
    with pytest.raises(InputError, match=r"uniav\.cross_task\.json.*protocol 'released'.*'clean'"):
        build_tables(config, tmp_path / "metrics")


def test_cross_task_file_missing_a_pair_is_refused(tmp_path: Path) -> None:
    config = _config()
    _write(config, tmp_path / "metrics")
    path = cross_task_path(tmp_path / "metrics", "naive_multi")
    data = json.loads(path.read_text())
    del data["pairs"]["sed.avel"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"naive_multi\.cross_task\.json.*pairs\.sed\.avel"):
        load_cross_task(config, tmp_path / "metrics")


def test_cross_task_file_missing_or_stale_is_refused(tmp_path: Path) -> None:
    config = _config()
    _write(config, tmp_path / "metrics")
    # other classes than the configured concepts (the concepts changed since)
    path = cross_task_path(tmp_path / "metrics", "single_avel")
    data = json.loads(path.read_text())
    del data["pairs"]["avel.sed"]["classes"]["cat meowing"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"single_avel\.cross_task\.json.*pairs\.avel\.sed\.classes"):
        build_tables(config, tmp_path / "metrics")
    path.unlink()
    with pytest.raises(InputError, match=r"single_avel\.cross_task\.json.*uniav cross-task"):
        build_tables(config, tmp_path / "metrics")
    # a non-number average (strict JSON reader: the file's own error)
    path.write_text(json.dumps(_cross_task(config, "single_avel")).replace(
        '"average_mAP": 0.44', '"average_mAP": "x"', 1))
    with pytest.raises(InputError, match=r"single_avel\.cross_task\.json.*average_mAP"):
        build_tables(config, tmp_path / "metrics")
    path.write_text('{"pairs": {}, "pairs": {}}')
    with pytest.raises(InputError, match=r"single_avel\.cross_task\.json.*duplicate key"):
        build_tables(config, tmp_path / "metrics")


# --------------------------------------------------------------------------------------------
# Pre-training
# --------------------------------------------------------------------------------------------

def test_pretraining_table(written: Path) -> None:
    text = (written / "pretraining.md").read_text()
    rows = _markdown_rows(text)
    assert rows[0][:5] == ["Method", "TAL 0.5", "TAL 0.75", "TAL 0.95", "TAL avg"]
    assert rows[2][:5] == ["Single-task from scratch", "50.00", "45.00", "41.00", "45.50"]
    # finetune_*: bases 0.52 / 0.62 / 0.72
    assert rows[3] == ["Fine-tuned from UniAV", "52.00", "47.00", "43.00", "47.50",
                       "58.00", "56.00", "54.00", "58.00", "68.00", "66.00", "64.00", "68.00"]
    assert rows[4][0] == "UniAV (multi-task)" and rows[4][1] == "55.00"
    assert text.startswith("## Pre-training")
    assert text.split("\n")[2].startswith("Pre-training: models trained from scratch against "
                                          "models fine-tuned from another experiment's weights. "
                                          "Benchmark: synthetic.")
    assert ('Fine-tuned (row "Fine-tuned from UniAV"): finetune_tal, finetune_sed, '
            "finetune_avel, from uniav's exported weights (fresh optimizer, schedule and EMA), "
            "4 epochs, 1 warm-up epoch.") in text
    assert ("Trained from scratch: single_tal, single_sed, single_avel, uniav, 12 epochs, "
            "2 warm-up epochs.") in text
    tex = (written / "pretraining.tex").read_text()
    assert r"\label{tab:pretraining}" in tex and "Fine-tuned from UniAV & 52.00 & 47.00" in tex


# --------------------------------------------------------------------------------------------
# Several seeds
# --------------------------------------------------------------------------------------------

def test_two_seeds_give_mean_and_std(tmp_path: Path) -> None:
    """seeds [2024, 7], offsets 0 and 0.02 (novel 0 and 0.04): seen std 0.02/sqrt 2 = 1.41 %,
    novel 2.83 %, the mean column's std that of the per-seed means (0.25, 0.28): 2.12 %."""
    config = _config("seeds=[2024, 7]")
    _write(config, tmp_path / "metrics", {2024: 0.0, 7: 0.02})
    write_tables(config, tmp_path / "metrics", tmp_path / "tables")
    open_set = _markdown_rows((tmp_path / "tables" / "open_set.md").read_text())
    assert open_set[2][1:4] == ["41.00 ± 1.41", "12.00 ± 2.83", "26.50 ± 2.12"]
    assert open_set[4][4:7] == ["53.00 ± 1.41", "–", "–"]
    cross = _markdown_rows((tmp_path / "tables" / "cross_task.md").read_text())
    assert cross[4][1:3] == ["51.00 ± 1.41", "21.00 ± 1.41"]
    for name in ("open_set", "cross_task", "pretraining"):
        assert "n = 2 seeds (2024, 7)." in (tmp_path / "tables" / f"{name}.md").read_text()
    pretraining = _markdown_rows((tmp_path / "tables" / "pretraining.md").read_text())
    assert pretraining[3][1] == "53.00 ± 1.41"
    rows = list(csv.reader(io.StringIO((tmp_path / "tables" / "cross_task.csv").read_text())))
    assert rows[0][1:5] == ["tal tal.sed own avg mAP", "tal tal.sed own avg mAP std",
                            "tal tal.sed cross avg mAP", "tal tal.sed cross avg mAP std"]
    assert rows[3][1:5] == ["51.00", "1.41", "21.00", "1.41"]
    # the seed run's cross-task file is read too
    cross_task_path(tmp_path / "metrics", "uniav.seed7").unlink()
    with pytest.raises(InputError, match=r"uniav\.seed7\.cross_task\.json"):
        build_tables(config, tmp_path / "metrics")


def test_class_groups_are_aggregated_over_seeds() -> None:
    runs = [{"tasks": {"tal": _open_set_task("tal", 0.40, 0.10)}},
            {"tasks": {"tal": _open_set_task("tal", 0.44, None)}}]
    mean, std = aggregate_runs(runs, "e")
    groups = mean["tasks"]["tal"]["class_groups"]
    assert groups["seen"]["average_mAP"] == pytest.approx(0.42)
    assert groups["seen"]["mAP"] == pytest.approx([0.42] * len(TAL_T))
    assert std["tasks"]["tal"]["class_groups"]["seen"]["average_mAP"] == pytest.approx(
        0.04 / math.sqrt(2))
    assert groups["novel"]["average_mAP"] is None and groups["novel"]["mAP"] is None
    assert groups["seen"]["classes"] == ["A"]
    assert std["tasks"]["tal"]["seen_novel_mean"] is None


# --------------------------------------------------------------------------------------------
# The tables job's settings, the column classes
# --------------------------------------------------------------------------------------------

def test_tables_settings_follow_what_the_captions_state() -> None:
    base = tables_settings(_config())
    assert base == tables_settings(_config())
    assert base["tables"]["open_set"][2] == {"label": "UniAV", "experiments": ["open_set_uniav"]}
    assert base["cross_task_pairs"]["sed.avel"]["Cat"] == "cat meowing"
    held_out = tables_settings(_config(
        "experiments.open_set_uniav.held_out_classes.tal=[Walking the dog]"))
    assert held_out != base
    assert held_out["beyond"]["experiments"]["open_set_uniav"]["held_out_classes"]["tal"] == \
        ["Walking the dog"]
    concept = tables_settings(_config("datasets.synthetic.tasks.avel.concepts.cat meowing=kitten"))
    assert concept != base and "Cat" not in concept["cross_task_pairs"]["sed.avel"]
    epochs = tables_settings(_config("experiments.finetune_sed.train.epochs=5"))
    assert epochs["beyond"]["experiments"]["finetune_sed"]["schedule"] == [5, 1]
    assert epochs != base
    bare = tables_settings(_config("benchmarks.synthetic.tables.open_set=[]",
                                   "benchmarks.synthetic.tables.cross_task=[]",
                                   "benchmarks.synthetic.tables.pretraining=[]"))
    assert "beyond" not in bare and "cross_task_pairs" not in bare
    assert set(bare["tables"]) == {"main", "ablation"}


def test_column_csv_headers_name_their_task() -> None:
    assert ExtraColumn("psds1", "PSDS1").csv_header == "sed psds1"
    assert ExtraColumn("f1", "F1", task="avel").csv_header == "avel f1"
    assert GroupColumn("tal", "seen", "seen", "seen avg mAP").csv_header == "tal seen avg mAP"


def test_cross_task_pair_without_ground_truth_is_a_missing_cell(tmp_path: Path) -> None:
    """A tiny test split may lack every class of a pair: `uniav cross-task` records the pair
    unscored (null, no_ground_truth) and the table shows the two cells as missing, with two
    seeds too."""
    config = _config("seeds=[1,2]")
    _write(config, tmp_path / "metrics", {1: 0.0, 2: 0.02})
    for run in ("uniav.seed1", "uniav.seed2"):
        path = cross_task_path(tmp_path / "metrics", run)
        data = json.loads(path.read_text())
        data["pairs"]["sed.avel"].update({"own": None, "cross": None, "no_ground_truth": True})
        path.write_text(json.dumps(data))
    write_tables(config, tmp_path / "metrics", tmp_path / "tables")
    text = (tmp_path / "tables" / "cross_task.md").read_text()
    uniav = next(row for row in _markdown_rows(text) if row[0] == "UniAV")
    assert uniav[7:9] == ["–", "–"]                 # SED own (AVEL concepts), SED AVEL names
    assert uniav[5] == "53.00 ± 1.41"                # SED own (TAL concepts): still scored
    assert "A missing value: the test split has no instance of the pair's classes" in text
    # unscored without the marker is malformed, naming the file and field
    path = cross_task_path(tmp_path / "metrics", "uniav.seed1")
    data = json.loads(path.read_text())
    del data["pairs"]["sed.avel"]["no_ground_truth"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"uniav\.seed1\.cross_task\.json.*pairs\.sed\.avel\.own"):
        load_cross_task(config, tmp_path / "metrics")
