"""Figures from hand-written histories, metrics, predictions and annotations."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from uniav.config import config_from_dict
from uniav.report.figures import (curve_records, figure_paths, per_class_average,
                                    write_combined_curves_csv, write_curve_csv, write_figures)

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = {
    "experiment": "uniav", "tasks": ["tal", "sed"], "first_epoch": 1, "best_epoch": 2,
    "history": [
        {"epoch": 1, "iteration": 2, "lr": 0.001, "train_loss": {"tal": 2.0, "sed": 4.0}},
        {"epoch": 2, "iteration": 4, "lr": 0.0005, "train_loss": {"tal": 1.0, "sed": 2.0},
         "val_average_mAP": {"tal": 0.25, "sed": 0.5}, "val_mean_average_mAP": 0.375,
         "gated": {"tal": False, "sed": False}},
    ]}


def test_curve_records_flatten_the_history(tmp_path: Path) -> None:
    columns, records = curve_records(HISTORY)
    assert columns == ["epoch", "iteration", "lr", "train_loss", "train_loss_tal",
                       "train_loss_sed", "val_mean_average_mAP", "val_average_mAP_tal",
                       "val_average_mAP_sed"]
    assert records[0] == {"epoch": 1, "iteration": 2, "lr": 0.001, "train_loss": 3.0,
                          "train_loss_tal": 2.0, "train_loss_sed": 4.0,
                          "val_mean_average_mAP": None, "val_average_mAP_tal": None,
                          "val_average_mAP_sed": None}
    assert records[1]["train_loss"] == 1.5 and records[1]["val_average_mAP_sed"] == 0.5
    path = write_curve_csv(HISTORY, tmp_path / "curves" / "uniav.csv")
    assert path.read_text().splitlines() == [
        ",".join(columns), "1,2,0.001,3,2,4,,,", "2,4,0.0005,1.5,1,2,0.375,0.25,0.5"]


def test_histories_counting_epochs_from_0_give_the_same_curve() -> None:
    """training.json written before `first_epoch` counted epochs from 0."""
    old = {**HISTORY, "best_epoch": 1,
           "history": [{**entry, "epoch": entry["epoch"] - 1} for entry in HISTORY["history"]]}
    del old["first_epoch"]
    assert curve_records(old) == curve_records(HISTORY)


def test_combined_curves_have_every_experiment_and_task(tmp_path: Path) -> None:
    single = {"experiment": "single_avel", "tasks": ["avel"], "history": [
        {"epoch": 0, "iteration": 1, "lr": 0.01, "train_loss": {"avel": 5.0},
         "val_average_mAP": {"avel": 0.1}, "val_mean_average_mAP": 0.1}]}
    path = write_combined_curves_csv({"uniav": HISTORY, "single_avel": single},
                                     tmp_path / "curves.csv")
    assert path.read_text().splitlines() == [
        "experiment,epoch,iteration,lr,train_loss,train_loss_tal,train_loss_sed,train_loss_avel,"
        "val_mean_average_mAP,val_average_mAP_tal,val_average_mAP_sed,val_average_mAP_avel",
        "uniav,1,2,0.001,3,2,4,,,,,", "uniav,2,4,0.0005,1.5,1,2,,0.375,0.25,0.5,",
        "single_avel,1,1,0.01,5,,,5,0.1,,,0.1"]


def test_per_class_average_skips_non_numbers() -> None:
    assert per_class_average({"per_class": {"A": [0.5, 0.25], "B": [None, 1.0], "C": []}}) == \
        {"A": 0.375, "B": 1.0}


def test_write_figures_end_to_end(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["benchmarks"].pop("synthetic")   # its experiments and tables: test_beyond_main_tables
    raw["experiments"] = {"single_sed": {"tasks": ["sed"]}, "uniav": {"tasks": ["tal", "sed"]}}
    raw["tables"] = {"main": [{"label": "Single", "experiments": ["single_sed"]},
                              {"label": "UniAV", "experiments": ["uniav"]}]}
    for task in ("tal", "sed"):
        annotations = tmp_path / f"{task}.json"
        annotations.write_text(json.dumps({"classes": ["Dog", "Cat"], "database": {
            f"{task}_v{i}": {"subset": "testing", "duration": 10.0,
                             "annotations": [{"segment": [1.0 + i, 4.0 + i], "label": "Dog"}]}
            for i in range(4)}}))
        raw["datasets"]["synthetic"]["tasks"][task]["annotations"] = str(annotations)
    config = config_from_dict(raw)
    for name, tasks in (("single_sed", ["sed"]), ("uniav", ["tal", "sed"])):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "training.json").write_text(
            json.dumps({**HISTORY, "experiment": name, "tasks": tasks}))
        (tmp_path / "metrics").mkdir(exist_ok=True)
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps({"tasks": {
            t: {"thresholds": [0.5], "mAP": [0.4], "average_mAP": 0.4,
                "per_class": {"Dog": [0.4], "Cat": [0.0]}} for t in tasks}}))
        for t in tasks:
            (tmp_path / "predictions" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "predictions" / name / f"{t}.json").write_text(json.dumps({"results": {
                f"{t}_v0": [{"segment": [1.2, 3.9], "label": "Dog", "score": 0.9},
                            {"segment": [6.0, 7.0], "label": "Cat", "score": 0.2}]}}))
    written = write_figures(config, metrics_dir=tmp_path / "metrics",
                            models_dir=tmp_path / "models",
                            predictions_dir=tmp_path / "predictions",
                            output_dir=tmp_path / "figures", videos_per_task=2)
    assert sorted(written) == sorted(figure_paths(config, tmp_path / "figures"))
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.parent.name for p in pngs} == {"training_curves", "per_class_ap", "timelines"}
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in pngs)
