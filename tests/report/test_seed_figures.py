"""Figures with several seeds: every seed's training curve, per-class AP means with error bars,
the first seed's predictions in the timelines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

import uniav.report.figures as figures
from tests.report.test_figures import HISTORY, PNG_MAGIC, REPO_ROOT
from uniav.config import config_from_dict


def test_write_figures_with_two_seeds(tmp_path: Path, monkeypatch) -> None:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["benchmarks"].pop("synthetic")   # its experiments and tables: test_beyond_main_tables
    raw["experiments"] = {"uniav": {"tasks": ["tal", "sed"]}}
    raw["tables"] = {"main": [{"label": "UniAV", "experiments": ["uniav"]}]}
    raw["seeds"] = [2024, 7]
    for task in ("tal", "sed"):
        annotations = tmp_path / f"{task}.json"
        annotations.write_text(json.dumps({"classes": ["Dog", "Cat"], "database": {
            f"{task}_v{i}": {"subset": "testing", "duration": 10.0,
                             "annotations": [{"segment": [1.0 + i, 4.0 + i], "label": "Dog"}]}
            for i in range(3)}}))
        raw["datasets"]["synthetic"]["tasks"][task]["annotations"] = str(annotations)
    config = config_from_dict(raw)
    for run, dog in (("uniav", 0.4), ("uniav.seed7", 0.6)):
        (tmp_path / "models" / run).mkdir(parents=True)
        (tmp_path / "models" / run / "training.json").write_text(json.dumps(HISTORY))
        (tmp_path / "metrics").mkdir(exist_ok=True)
        (tmp_path / "metrics" / f"{run}.json").write_text(json.dumps({"tasks": {
            t: {"thresholds": [0.5], "mAP": [dog], "average_mAP": dog,
                "per_class": {"Dog": [dog], "Cat": [0.0]}} for t in ("tal", "sed")}}))
    for t in ("tal", "sed"):  # the timelines read the first seed's run only
        (tmp_path / "predictions" / "uniav").mkdir(parents=True, exist_ok=True)
        (tmp_path / "predictions" / "uniav" / f"{t}.json").write_text(json.dumps({"results": {
            f"{t}_v0": [{"segment": [1.2, 3.9], "label": "Dog", "score": 0.9}]}}))
    bars = {}
    plot = figures.plot_per_class_ap

    def recording(task, series, path, errors=None):
        bars[task] = (series, errors)
        return plot(task, series, path, errors)

    monkeypatch.setattr(figures, "plot_per_class_ap", recording)
    written = figures.write_figures(config, metrics_dir=tmp_path / "metrics",
                                    models_dir=tmp_path / "models",
                                    predictions_dir=tmp_path / "predictions",
                                    output_dir=tmp_path / "figures", videos_per_task=1)
    assert sorted(written) == sorted(figures.figure_paths(config, tmp_path / "figures"))
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in written if p.suffix == ".png")
    curves = (tmp_path / "figures" / "curves" / "uniav.csv").read_text().splitlines()
    assert curves[0].startswith("seed,epoch,iteration,")
    assert [line.split(",")[:2] for line in curves[1:]] == [
        ["2024", "1"], ["2024", "2"], ["7", "1"], ["7", "2"]]
    combined = (tmp_path / "figures" / "curves.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in combined[1:]] == [
        "uniav", "uniav", "uniav.seed7", "uniav.seed7"]
    series, errors = bars["sed"]
    assert series[0][0] == "UniAV"
    assert series[0][1]["Dog"] == pytest.approx(0.5) and series[0][1]["Cat"] == 0.0
    assert errors[0]["Dog"] == pytest.approx(math.sqrt(0.02)) and errors[0]["Cat"] == 0.0
