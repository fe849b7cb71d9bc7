"""``uniav score`` end to end, through the installed console command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_REFERENCE

FIXTURE = SHARED_REFERENCE / "mmaction2_activitynet_fixture"
UNIAV = Path(sys.executable).with_name("uniav")
ANET_TIOU = ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]


def uniav(*args: str) -> subprocess.CompletedProcess:
    command = [str(UNIAV)] if UNIAV.exists() else [sys.executable, "-m", "uniav"]
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)


@pytest.fixture
def fixture_gt(tmp_path) -> Path:
    """The mmaction2 ground truth in the project's layout ("database" wrapper, no "v_")."""
    database = json.loads((FIXTURE / "gt.json").read_text())
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"database": {v[2:]: entry for v, entry in database.items()}}))
    return path


def write_predictions(path: Path, results: dict) -> Path:
    path.write_text(json.dumps({"version": "test", "results": results}))
    return path


def test_help():
    completed = uniav("score", "--help")
    assert completed.returncode == 0
    for option in ("--ground-truth", "--predictions", "--subset", "--tiou", "--output",
                   "--remove-duplicate-gt", "--sed-extras"):
        assert option in completed.stdout


def test_scores_the_mmaction2_fixture(fixture_gt, tmp_path):
    out = tmp_path / "metrics" / "out.json"
    completed = uniav("score", "--ground-truth", str(fixture_gt), "--predictions",
                      str(FIXTURE / "result.json"), "--subset", "validation", "--tiou",
                      *ANET_TIOU, "--output", str(out))
    assert completed.returncode == 0, completed.stderr
    assert "average mAP 61.78 %" in completed.stdout
    metrics = json.loads(out.read_text())
    expected = json.loads((SHARED_REFERENCE / "detection_map_cases.json").read_text())
    assert metrics["mAP"] == pytest.approx(expected["multi_class_fixture"]["mAP"], abs=1e-6)
    assert metrics["average_mAP"] == pytest.approx(0.6177579365079365, abs=1e-12)
    assert metrics["thresholds"] == pytest.approx([float(t) for t in ANET_TIOU])
    assert metrics["subset"] == "validation" and metrics["videos_evaluated"] == 2
    assert metrics["per_class"]["Cleaning shoes"] == [1.0] * 10
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_reversed_prediction_fails_with_video_and_field(fixture_gt, tmp_path):
    predictions = write_predictions(tmp_path / "pred.json", {
        "bYUmtLBL7W4": [{"segment": [10.0, 20.0], "label": "Wakeboarding", "score": 0.9},
                        {"segment": [57.0, 11.5], "label": "Wakeboarding", "score": 0.8}]})
    out = tmp_path / "out.json"
    out.write_text("previous metrics")
    completed = uniav("score", "--ground-truth", str(fixture_gt), "--predictions",
                      str(predictions), "--subset", "validation", "--tiou", "0.5",
                      "--output", str(out))
    assert completed.returncode == 2
    assert "video 'bYUmtLBL7W4'" in completed.stderr
    assert "field 'detections[1].segment'" in completed.stderr
    assert "reversed segment" in completed.stderr and str(predictions) in completed.stderr
    assert out.read_text() == "previous metrics"  # nothing already produced is lost


def test_unknown_subset_fails(fixture_gt, tmp_path):
    out = tmp_path / "out.json"
    completed = uniav("score", "--ground-truth", str(fixture_gt), "--predictions",
                      str(FIXTURE / "result.json"), "--subset", "testing", "--tiou", "0.5",
                      "--output", str(out))
    assert completed.returncode == 2
    assert "subset 'testing' has no videos (subsets in the file: validation)" in completed.stderr
    assert not out.exists()


@pytest.mark.parametrize("text, message", [
    ('{"results": {"hDPLy21Yyuk": [{"segment": [1, 2], "label": "Cleaning shoes", '
     '"score": NaN}]}}', "field 'detections[0].score': score must be a finite number"),
    ('{"results": {"hDPLy21Yyuk": [{"segment": [4, 4], "label": "Cleaning shoes", '
     '"score": 0.5}]}}', "zero-length segment"),
    ('{"results": [1, 2', "not valid JSON"),
    ('{"database": {}}', "'results' mapping"),
])
def test_bad_predictions_fail(fixture_gt, tmp_path, text, message):
    predictions = tmp_path / "pred.json"
    predictions.write_text(text)
    completed = uniav("score", "--ground-truth", str(fixture_gt), "--predictions",
                      str(predictions), "--subset", "validation", "--tiou", "0.5",
                      "--output", str(tmp_path / "out.json"))
    assert completed.returncode == 2
    assert message in completed.stderr


def test_threshold_outside_the_unit_interval_is_a_usage_error(fixture_gt, tmp_path):
    completed = uniav("score", "--ground-truth", str(fixture_gt), "--predictions",
                      str(FIXTURE / "result.json"), "--subset", "validation", "--tiou", "0.5",
                      "1.5", "--output", str(tmp_path / "out.json"))
    assert completed.returncode == 2 and "(0, 1]" in completed.stderr


def test_sed_extras_and_duplicate_removal(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"classes": ["Dog", "Speech"], "database": {
        "f1": {"subset": "eval", "duration": 10.0, "annotations": [
            {"segment": [1, 3], "label": "Dog"}, {"segment": [5, 9], "label": "Speech"},
            {"segment": [5, 9], "label": "Speech"}]},
        "f2": {"subset": "eval", "duration": 10.0, "annotations": [
            {"segment": [0, 4], "label": "Speech"}]}}}))
    predictions = write_predictions(tmp_path / "pred.json", {
        "f1": [{"segment": [1.1, 3.1], "label": "Dog", "score": 0.9},
               {"segment": [5, 8], "label": "Speech", "score": 0.8},
               {"segment": [6, 9.5], "label": "Speech", "score": 0.3}],
        "f2": [{"segment": [0.2, 4], "label": "Speech", "score": 0.7},
               {"segment": [6, 7], "label": "Dog", "score": 0.6}]})
    out = tmp_path / "out.json"
    completed = uniav("score", "--ground-truth", str(gt), "--predictions", str(predictions),
                      "--subset", "eval", "--tiou", "0.1", "0.5", "0.9", "--output", str(out),
                      "--remove-duplicate-gt", "--sed-extras")
    assert completed.returncode == 0, completed.stderr
    metrics = json.loads(out.read_text())
    assert metrics["duplicates_removed"] == 1 and metrics["num_ground_truth"] == 3
    sed = metrics["sed"]
    assert sed["kind"] == "extras" and sed["gt_events_merged"] == 1  # the duplicate
    assert sed["collar_f1_macro"] == pytest.approx(0.5833, abs=5e-5)
    assert sed["collar_f1_micro"] == pytest.approx(0.5714, abs=5e-5)
    assert sed["psds1"] == pytest.approx(1.0)
    assert "SED extras: PSDS1 1.0000" in completed.stdout


def test_command_module_imports_nothing_heavy():
    code = ("import sys, uniav.evaluation.cli; "
            "print(sorted(m for m in ('torch', 'sed_scores_eval', 'pandas') if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               cwd=REPO_ROOT, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
