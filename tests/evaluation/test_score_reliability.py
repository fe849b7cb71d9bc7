"""``uniav score`` on hostile input: exit status 2, a message naming file, video/key and field,
no traceback, no input overwritten; and the documented rule for segments outside the video.

Run in-process through :func:`uniav.cli.main` (fast); each test names the hole it covers
(items of the reliability issue, docs/reliability.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from uniav.cli import main
from uniav.data.annotations import VideoAnnotation
from uniav.evaluation import evaluate_detection

GT = {"classes": ["Dog", "Speech"], "database": {
    "v1": {"subset": "eval", "duration": 10.0, "annotations": [
        {"segment": [1.0, 3.0], "label": "Dog"}, {"segment": [5.0, 9.0], "label": "Speech"}]},
    "v2": {"subset": "eval", "duration": 20.0, "annotations": [
        {"segment": [2.0, 6.0], "label": "Dog"}]}}}
RESULTS = {"v1": [{"segment": [1.0, 3.0], "label": "Dog", "score": 0.9},
                  {"segment": [5.0, 8.0], "label": "Speech", "score": 0.8}],
           "v2": [{"segment": [2.0, 6.5], "label": "Dog", "score": 0.7}]}


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def score(tmp_path: Path, capsys, *, gt=GT, results=RESULTS, output: Path | None = None,
          extra: tuple[str, ...] = ()) -> tuple[int, str, Path]:
    """Run `uniav score`; returns (exit status, stderr, output path); stdout in score.stdout."""
    gt_path = gt if isinstance(gt, Path) else _write(tmp_path / "gt.json", gt)
    predictions = (results if isinstance(results, Path)
                   else _write(tmp_path / "pred.json", {"results": results}
                               if isinstance(results, dict) else results))
    output = output or tmp_path / "metrics.json"
    status = main(["score", "--ground-truth", str(gt_path), "--predictions", str(predictions),
                   "--subset", "eval", "--tiou", "0.5", "0.7", "--output", str(output),
                   *extra])
    captured = capsys.readouterr()
    score.stdout = captured.out
    return status, captured.err, output


def assert_refused(status: int, stderr: str, *names: str) -> None:
    assert status == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("uniav score: error: ")
    for name in names:
        assert name in stderr, (name, stderr)


def test_valid_input_scores(tmp_path, capsys):
    status, _, output = score(tmp_path, capsys)
    assert status == 0
    metrics = json.loads(output.read_text())
    assert metrics["average_mAP"] == pytest.approx(1.0)
    assert metrics["outside_video"] == {"ground_truth_clipped": 0, "ground_truth_ignored": 0,
                                        "predictions_clipped": 0, "predictions_ignored": 0}


# ---- item 2: duplicate keys ----------------------------------------------------------------

def test_video_twice_in_the_ground_truth(tmp_path, capsys):
    entry = json.dumps(GT["database"]["v1"])
    text = ('{"classes": ["Dog", "Speech"], "database": {"v1": %s, "v2": %s, "v1": %s}}'
            % (entry, json.dumps(GT["database"]["v2"]), entry))
    gt = _write(tmp_path / "gt_twice.json", text)
    status, stderr, output = score(tmp_path, capsys, gt=gt)
    assert_refused(status, stderr, f"file {gt}", "duplicate key 'v1'", "field 'v1'")
    assert not output.exists()


def test_video_twice_in_the_predictions(tmp_path, capsys):
    # the second "v1" would silently replace the first and change the mAP
    text = ('{"results": {"v1": %s, "v2": %s, "v1": []}}'
            % (json.dumps(RESULTS["v1"]), json.dumps(RESULTS["v2"])))
    predictions = _write(tmp_path / "pred_twice.json", text)
    status, stderr, _ = score(tmp_path, capsys, results=predictions)
    assert_refused(status, stderr, f"file {predictions}", "duplicate key 'v1'")


def test_key_twice_in_one_detection(tmp_path, capsys):
    text = ('{"results": {"v1": [{"segment": [1, 3], "label": "Dog", "score": 0.9, '
            '"score": 0.1}]}}')
    predictions = _write(tmp_path / "pred_key.json", text)
    status, stderr, _ = score(tmp_path, capsys, results=predictions)
    assert_refused(status, stderr, f"file {predictions}", "duplicate key 'score'")


# ---- item 3: absurd nesting ----------------------------------------------------------------

@pytest.mark.parametrize("which", ["ground truth", "predictions"])
def test_deeply_nested_json(tmp_path, capsys, which):
    deep = _write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000)
    if which == "ground truth":
        status, stderr, _ = score(tmp_path, capsys, gt=deep)
    else:
        status, stderr, _ = score(tmp_path, capsys, results=deep)
    assert_refused(status, stderr, f"file {deep}", "nested too deeply")


# ---- item 4: an output never replaces an input ---------------------------------------------

@pytest.mark.parametrize("victim", ["--ground-truth", "--predictions"])
def test_output_equal_to_an_input_is_refused(tmp_path, capsys, victim):
    gt = _write(tmp_path / "gt.json", GT)
    predictions = _write(tmp_path / "pred.json", {"results": RESULTS})
    target = gt if victim == "--ground-truth" else predictions
    before = target.read_bytes()
    status, stderr, _ = score(tmp_path, capsys, gt=gt, results=predictions, output=target)
    assert_refused(status, stderr, f"file {target}", "field '--output'", victim)
    assert target.read_bytes() == before


def test_output_linked_to_an_input_is_refused(tmp_path, capsys):
    gt = _write(tmp_path / "gt.json", GT)
    link = tmp_path / "elsewhere" / "metrics.json"
    link.parent.mkdir()
    link.symlink_to(gt)
    hard = tmp_path / "hard.json"
    os.link(gt, hard)
    for output in (link, hard):
        status, stderr, _ = score(tmp_path, capsys, gt=gt, output=output)
        assert_refused(status, stderr, "--ground-truth", "same file")
    assert json.loads(gt.read_text()) == GT


def test_output_that_is_a_directory_is_refused(tmp_path, capsys):
    status, stderr, _ = score(tmp_path, capsys, output=tmp_path)
    assert_refused(status, stderr, f"file {tmp_path}", "is a directory")


# ---- item 6: booleans are not scores; segments outside the video ---------------------------

@pytest.mark.parametrize("detection, field", [
    ({"segment": [1, 3], "label": "Dog", "score": True}, "detections[0].score"),
    ({"segment": [1, 3], "label": "Dog", "score": False}, "detections[0].score"),
    ({"segment": [True, 3], "label": "Dog", "score": 0.5}, "detections[0].segment"),
    ({"segment": [1, 3], "label": 1, "score": 0.5}, "detections[0].label"),
])
def test_booleans_are_refused_as_numbers(tmp_path, capsys, detection, field):
    results = {"v1": [{"segment": [5, 8], "label": "Speech", "score": 0.4}, dict(detection)]}
    results["v1"].reverse()  # the bad one first: mixed with real numbers numpy would coerce it
    status, stderr, _ = score(tmp_path, capsys, results=results)
    assert_refused(status, stderr, "video 'v1'", f"field '{field}'")


def test_boolean_score_among_numbers_is_refused(tmp_path, capsys):
    results = {"v1": [{"segment": [1, 3], "label": "Dog", "score": 0.9},
                      {"segment": [5, 8], "label": "Speech", "score": True}]}
    status, stderr, _ = score(tmp_path, capsys, results=results)
    assert_refused(status, stderr, "video 'v1'", "field 'detections[1].score'",
                   "expected a number, got True")


def test_predictions_outside_the_video_are_clipped_or_ignored_and_counted(tmp_path, capsys):
    """[-5, 3] and [3, 500] on a 10 s clip are clipped to it; [12, 15] lies wholly outside and
    is ignored; the counts appear in the metrics and on the console."""
    results = {"v1": [{"segment": [-5.0, 3.0], "label": "Dog", "score": 0.9},
                      {"segment": [5.0, 500.0], "label": "Speech", "score": 0.8},
                      {"segment": [12.0, 15.0], "label": "Speech", "score": 0.95}],
               "v2": RESULTS["v2"]}
    status, _, output = score(tmp_path, capsys, results=results)
    assert status == 0
    metrics = json.loads(output.read_text())
    assert metrics["outside_video"] == {"ground_truth_clipped": 0, "ground_truth_ignored": 0,
                                        "predictions_clipped": 2, "predictions_ignored": 1}
    assert metrics["num_predictions"] == 4 and metrics["num_scored_predictions"] == 3
    # clipped: [5, 10] vs [5, 9] (tIoU 0.8) is a hit at both thresholds; the ignored [12, 15],
    # scored first, would otherwise have been a false positive ranked above it
    assert metrics["per_class"]["Speech"] == [1.0, 1.0]
    # clipped: [0, 3] vs [1, 3] (tIoU 0.67) is a hit at 0.5 only (then v2's hit: AP 0.5 * 0.5)
    assert metrics["per_class"]["Dog"] == [1.0, 0.25]
    assert "'predictions_clipped': 2, 'predictions_ignored': 1" in score.stdout


def test_ground_truth_follows_the_same_rule():
    videos = [VideoAnnotation("v", "eval", 10.0, None, np.array([[-2.0, 4.0], [8.0, 14.0],
                                                                 [11.0, 13.0]]),
                              ("a", "a", "a"))]
    predictions = {"results": {"v": [{"segment": [0.0, 4.0], "label": "a", "score": 0.9},
                                     {"segment": [8.0, 10.0], "label": "a", "score": 0.8}]}}
    result = evaluate_detection(videos, predictions, thresholds=[0.99])
    assert result.outside_video == {"ground_truth_clipped": 2, "ground_truth_ignored": 1,
                                    "predictions_clipped": 0, "predictions_ignored": 0}
    assert result.num_ground_truth == 2 and result.average_map == 1.0


def test_ground_truth_clamped_when_read_is_counted(tmp_path, capsys):
    gt = json.loads(json.dumps(GT))
    gt["database"]["v1"]["annotations"][1]["segment"] = [5.0, 10.4]  # within the 1 s tolerance
    status, _, output = score(tmp_path, capsys, gt=gt)
    assert status == 0
    assert json.loads(output.read_text())["outside_video"]["ground_truth_clipped"] == 1


def test_ground_truth_far_outside_the_video_is_an_error(tmp_path, capsys):
    gt = json.loads(json.dumps(GT))
    gt["database"]["v2"]["annotations"][0]["segment"] = [3.0, 500.0]
    status, stderr, _ = score(tmp_path, capsys, gt=gt)
    assert_refused(status, stderr, "video 'v2'", "field 'annotations[0].segment'",
                   "outside the video")


@pytest.mark.parametrize("value", ["nan", "inf", "0", "1.5", "x"])
def test_tiou_out_of_range_is_a_usage_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["score", "--ground-truth", str(tmp_path / "missing.json"), "--predictions",
              str(tmp_path / "missing.json"), "--subset", "eval", "--tiou", value,
              "--output", str(tmp_path / "out.json")])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --tiou" in stderr and "Traceback" not in stderr


def test_rounding_overhang_is_clipped_but_not_counted():
    videos = [VideoAnnotation("v", "eval", 10.33336, None, np.array([[1.0, 10.33336]]), ("a",))]
    predictions = {"results": {"v": [{"segment": [1.0, 10.3334], "label": "a", "score": 0.9}]}}
    result = evaluate_detection(videos, predictions, thresholds=[1.0])
    assert result.average_map == 1.0  # clipped onto the ground truth exactly
    assert result.outside_video["predictions_clipped"] == 0
