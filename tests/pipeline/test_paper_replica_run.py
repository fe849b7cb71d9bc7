"""The paper benchmark, run as a user with the released files runs it - on their replica.

The three commands of docs/datasets.md, offline, in a copy of the workflow (its params.yaml keeps
one experiment, UniAV, to stay small):

    uniav paper-replica R --seed 11
    uniav download --set benchmark=paper --set datasets.paper.root=R --pin-unknown-checksums
    snakemake --cores 2 reproduce_tables --config benchmark=paper scale=tiny 'datasets={paper: {root: R}}'

Then the tables carry the released protocol and the published-numbers rows, and every count of
the metrics' data report equals what the replica planted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.conftest import copy_workflow, run, tool_env

pytestmark = pytest.mark.slow


def _one_experiment(params: dict) -> None:
    params["experiments"] = {"uniav": params["experiments"]["uniav"]}
    params["tables"]["main"] = [{"label": "UniAV", "experiments": ["uniav"]}]
    params["tables"]["ablation"] = []


@pytest.fixture(scope="module")
def replica_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("paper_replica")
    replica = root / "R"
    project = copy_workflow(root / "project", _one_experiment)
    env = tool_env()
    run(["uniav", "paper-replica", str(replica), "--seed", "11"], project, env)
    run(["uniav", "download", "--set", "benchmark=paper", "--set",
         f"datasets.paper.root={replica}", "--pin-unknown-checksums"], project, env)
    run(["snakemake", "--cores", "2", "reproduce_tables", "--config", "benchmark=paper",
         "scale=tiny", f"datasets={{paper: {{root: {replica}}}}}"], project, env, timeout=1200)
    return replica, project


def test_tables_carry_the_protocol_and_the_published_rows(replica_run):
    _, project = replica_run
    main = (project / "results" / "tables" / "main.md").read_text()
    assert "Benchmark: paper (scale tiny)" in main
    assert "Protocol: released (the released code's protocol: the plateau gate reads test-split" in main
    assert "| UniAV (published)" in main
    metrics = json.loads((project / "results" / "metrics" / "experiments" / "uniav.json").read_text())
    assert metrics["protocol"] == "released"
    assert set(metrics["tasks"]) == {"tal", "sed", "avel"}
    training = json.loads((project / "results" / "models" / "uniav" / "training.json").read_text())
    assert training["protocol"] == "released" and training["exported_weights"] == "last_epoch"
    assert training["best_epoch"] == training["epochs"] - 1   # the last epoch is exported


#: Subsets of the replica per task: (training subset, test subset).
SUBSETS = {"tal": ("training", "validation"), "sed": ("validation", "public_eval"),
           "avel": ("train", "test")}


def test_data_report_counts_equal_the_planted_quirks(replica_run):
    replica, project = replica_run
    planted = json.loads((replica / "replica.json").read_text())["planted"]
    counts = json.loads((replica / "replica.json").read_text())["counts"]
    report = json.loads((project / "results" / "metrics" / "experiments" / "uniav.json").read_text())["data_report"]
    for task, (train_subset, test_subset) in SUBSETS.items():
        for split, subset in (("train", train_subset), ("validation", test_subset),
                              ("test", test_subset)):
            quirks, got = planted[task][subset], report[task][split]
            training = split == "train"
            assert got["subset"] == subset, (task, split)
            # the released protocol: the whole training subset trains, validation is the test
            assert got["videos_listed"] == counts[task][subset]["videos"], (task, split)
            assert got["videos_skipped"].get("missing_features", 0) == \
                quirks["missing_features"]["videos"], (task, split)
            assert got["annotations_dropped"].get("duplicate", 0) == \
                quirks["duplicate"]["annotations"], (task, split)
            zero = quirks["zero_length"]["annotations"]
            assert got["annotations_dropped" if training else "annotations_kept"].get(
                "zero_length", 0) == zero, (task, split)
            assert got["annotations_kept"].get("past_duration", 0) == \
                quirks["past_duration"]["annotations"], (task, split)
            assert got["videos_adjusted"].get("av_length_mismatch", 0) == \
                quirks["av_length_mismatch"]["videos"], (task, split)
            # the videos with annotations past their features have shortened features too
            short = quirks["features_short"]["videos"] + quirks["past_features"]["videos"]
            assert got["videos_adjusted"].get("features_short", 0) == short, (task, split)
            dropped_past = quirks["past_features"]["annotations"] if task == "tal" and training else 0
            assert got["annotations_dropped"].get("past_features", 0) == dropped_past, (task, split)
