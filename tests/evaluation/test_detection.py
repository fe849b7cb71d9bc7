"""Detection mAP: shared hand cases, the mmaction2 fixture, documented rules, properties."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from tests.conftest import SHARED_REFERENCE
from tests.evaluation.naive_reference import average_precision
from uniav.data.annotations import VideoAnnotation, load_annotations
from uniav.errors import InputError
from uniav.evaluation import (ACTIVITYNET_THRESHOLDS, Predictions, evaluate_detection,
                              load_predictions)

REFERENCE = json.loads((SHARED_REFERENCE / "detection_map_cases.json").read_text())
FIXTURE = SHARED_REFERENCE / "mmaction2_activitynet_fixture"


def thresholds_of(spec):
    if isinstance(spec, str):  # "linspace(a, b, n)"
        start, stop, num = (float(x) for x in spec[len("linspace("):-1].split(","))
        return np.linspace(start, stop, int(num))
    return spec


def ground_truth(rows, duration=100.0):
    """[video, t0, t1(, label)] rows -> VideoAnnotations (label 'x' by default)."""
    by_video: dict[str, list] = {}
    for row in rows:
        by_video.setdefault(row[0], []).append(row)
    return [VideoAnnotation(video, "validation", duration, None,
                            np.asarray([r[1:3] for r in video_rows], dtype=float).reshape(-1, 2),
                            tuple(r[3] if len(r) > 3 else "x" for r in video_rows))
            for video, video_rows in by_video.items()]


def results(rows):
    """[video, t0, t1, score(, label)] rows -> {"results": ...} (label 'x' by default)."""
    mapping: dict[str, list] = {}
    for row in rows:
        mapping.setdefault(row[0], []).append(
            {"segment": [row[1], row[2]], "score": row[3],
             "label": row[4] if len(row) > 4 else "x"})
    return {"results": mapping}


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=[c["id"] for c in REFERENCE["cases"]])
def test_reference_hand_cases(case):
    result = evaluate_detection(ground_truth(case["gt"]), results(case["pred"]),
                                thresholds=thresholds_of(case["thresholds"]))
    assert result.map_per_threshold == pytest.approx(case["ap"], abs=1e-12)
    assert result.per_class["x"] == pytest.approx(case["ap"], abs=1e-12)


@pytest.mark.parametrize("case", REFERENCE["must_reject"],
                         ids=[c["id"] for c in REFERENCE["must_reject"]])
def test_reference_degenerate_cases_are_rejected(case):
    with pytest.raises(InputError) as error:
        evaluate_detection(ground_truth(case["gt"]), results(case["pred"]),
                           thresholds=thresholds_of(case["thresholds"]))
    assert error.value.video == "v"
    assert "segment" in error.value.field


def test_reversed_prediction_names_video_and_field():
    with pytest.raises(InputError, match="reversed") as error:
        Predictions.from_results({"a": [{"segment": [0, 5], "label": "x", "score": 0.3}],
                                  "v": [{"segment": [1, 2], "label": "x", "score": 0.5},
                                        {"segment": [10, 0], "label": "x", "score": 0.9}]})
    assert error.value.video == "v" and error.value.field == "detections[1].segment"


def test_zero_length_ground_truth_is_rejected_even_with_a_valid_prediction():
    with pytest.raises(InputError, match="degenerate ground-truth") as error:
        evaluate_detection(ground_truth([["v", 5, 5]]), results([["v", 0, 10, 0.9]]),
                           thresholds=[0.5])
    assert error.value.field == "annotations[0].segment"


def load_mmaction_fixture(tmp_path, strip_prefix=True):
    database = json.loads((FIXTURE / "gt.json").read_text())
    if strip_prefix:  # README: GT ids carry "v_", result ids do not
        database = {video[2:]: entry for video, entry in database.items()}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"database": database}))
    return load_annotations(path), load_predictions(FIXTURE / "result.json")


def test_mmaction2_fixture(tmp_path):
    database, predictions = load_mmaction_fixture(tmp_path)
    result = evaluate_detection(database, predictions, subset="validation",
                                thresholds=np.linspace(0.5, 0.95, 10))
    expected = REFERENCE["multi_class_fixture"]
    assert result.map_per_threshold == pytest.approx(expected["mAP"], abs=1e-6)
    assert result.average_map == pytest.approx(expected["average_mAP"], abs=1e-12)
    # per-class values (the mmaction2 fixture's README)
    assert result.per_class["Wakeboarding"] == pytest.approx(
        [0.42857143] * 3 + [0.375] * 2 + [0.19444444] + [0.04166667] * 3 + [0.0], abs=1e-6)
    assert result.per_class["Cleaning shoes"] == pytest.approx([1.0] * 10, abs=1e-12)
    assert result.num_predictions == 14 and result.num_ground_truth == 4
    assert result.to_dict()["videos_evaluated"] == 2


def test_video_id_prefix_mismatch_is_rejected(tmp_path):
    database, predictions = load_mmaction_fixture(tmp_path, strip_prefix=False)
    with pytest.raises(InputError, match="none of the 2 videos"):
        evaluate_detection(database, predictions, subset="validation")


def test_unknown_subset_is_rejected(tmp_path):
    database, predictions = load_mmaction_fixture(tmp_path)
    with pytest.raises(InputError, match="subset 'test'"):
        evaluate_detection(database, predictions, subset="test")


def test_score_ties_rank_in_input_order():
    # C12: official ranks the later tied row first (AP 1.0); the documented rule gives 0.5
    result = evaluate_detection(ground_truth([["v", 0, 10]]),
                                results([["v", 20, 30, 0.5], ["v", 0, 10, 0.5]]),
                                thresholds=[0.5])
    assert result.map_per_threshold == (0.5,)
    result = evaluate_detection(ground_truth([["v", 0, 10]]),
                                results([["v", 0, 10, 0.5], ["v", 20, 30, 0.5]]),
                                thresholds=[0.5])
    assert result.map_per_threshold == (1.0,)


def test_tiou_ties_go_to_the_first_listed_instance():
    # [5, 25] has tIoU 0.2 with both instances; taking [0, 10] leaves [0, 10]'s exact match FP
    result = evaluate_detection(ground_truth([["v", 0, 10], ["v", 20, 30]]),
                                results([["v", 5, 25, 0.9], ["v", 0, 10, 0.8]]),
                                thresholds=[0.1])
    assert result.map_per_threshold == (0.5,)


def test_duplicate_ground_truth_removal_is_an_explicit_reported_option():
    gt = ground_truth([["v", 0, 10], ["v", 0, 10.0005], ["v", 20, 30, "y"]])
    preds = results([["v", 0, 10, 0.9], ["v", 20, 30, 0.8, "y"]])
    kept = evaluate_detection(gt, preds, thresholds=[0.5])
    assert kept.per_class["x"] == (0.5,) and kept.duplicates_removed == 0
    assert kept.num_ground_truth == 3
    removed = evaluate_detection(gt, preds, thresholds=[0.5], remove_duplicate_gt=True)
    assert removed.per_class["x"] == (1.0,) and removed.duplicates_removed == 1
    assert removed.num_ground_truth == 2 and removed.to_dict()["remove_duplicate_gt"] is True


def test_unknown_labels_are_reported_never_remapped():
    # D2: GT of classes A and C only; B listed without GT; Z unknown
    gt = ground_truth([["v", 0, 10, "A"], ["v", 20, 30, "C"]])
    preds = results([["v", 19, 31, 0.99, "Z"], ["v", 20, 30, 0.95, "B"], ["v", 40, 50, 0.9, "Z"],
                     ["v", 0, 10, 0.8, "A"], ["v", 20, 30, 0.7, "C"]])
    result = evaluate_detection(gt, preds, thresholds=[0.5], classes=["A", "B", "C"])
    assert result.per_class == {"A": (1.0,), "C": (1.0,)}
    assert result.ignored_predictions == {"unknown_label": 2, "class_without_ground_truth": 1}
    assert result.unknown_labels == {"Z": 2}
    assert result.classes_without_gt == ("B",)
    assert result.num_scored_predictions == 2


def test_predictions_on_videos_without_ground_truth_are_counted_false_positives():
    gt = ground_truth([["v", 0, 10]]) + [
        VideoAnnotation("empty", "validation", 50.0, None, np.zeros((0, 2)), ())]
    preds = results([["w", 0, 10, 0.95], ["empty", 0, 10, 0.9], ["v", 0, 10, 0.8]])
    result = evaluate_detection(gt, preds, thresholds=[0.5])
    assert result.map_per_threshold == pytest.approx((1 / 3,), abs=1e-12)
    assert result.predictions_on_videos_without_gt == 2
    assert result.prediction_videos_outside_gt == 1
    assert result.to_dict()["videos_evaluated"] == 2


def test_evaluated_videos_without_any_instance_are_rejected():
    empty = VideoAnnotation("v", "validation", 10.0, None, np.zeros((0, 2)), ())
    with pytest.raises(InputError, match="no ground-truth instance"):
        evaluate_detection([empty], results([["v", 0, 1, 0.5]]), thresholds=[0.5])


def test_ground_truth_without_predictions_are_misses():
    result = evaluate_detection(ground_truth([["a", 0, 10], ["b", 0, 10]]),
                                results([["a", 0, 10, 0.9]]), thresholds=[0.5])
    assert result.map_per_threshold == (0.5,)


def test_no_predictions_at_all():
    result = evaluate_detection(ground_truth([["v", 0, 10], ["v", 20, 30, "y"]]),
                                {"results": {}}, thresholds=[0.5, 0.7])
    assert result.map_per_threshold == (0.0, 0.0) and result.num_predictions == 0


@pytest.mark.parametrize("bad", [[], [0.0], [1.5], [float("nan")], [0.5, -0.1]])
def test_thresholds_outside_the_unit_interval_are_rejected(bad):
    with pytest.raises(ValueError, match="threshold"):
        evaluate_detection(ground_truth([["v", 0, 10]]), results([["v", 0, 10, 0.9]]),
                           thresholds=bad)


def test_ground_truth_label_outside_the_class_list_is_rejected():
    with pytest.raises(InputError, match="'y' is not in the class list"):
        evaluate_detection(ground_truth([["v", 0, 10, "y"]]), results([["v", 0, 10, 0.9]]),
                           classes=["x"])


@pytest.mark.parametrize("detection, field, message", [
    ({"segment": [0, 10], "label": "x", "score": float("nan")}, "detections[0].score", "finite"),
    ({"segment": [0, 10], "label": "x", "score": float("inf")}, "detections[0].score", "finite"),
    ({"segment": [3, 3], "label": "x", "score": 0.5}, "detections[0].segment", "zero-length"),
    ({"segment": [0, float("nan")], "label": "x", "score": 0.5}, "detections[0].segment",
     "finite"),
    ({"segment": [0, "10"], "label": "x", "score": 0.5}, "detections[0].segment", "two numbers"),
    ({"segment": [0, 1, 2], "label": "x", "score": 0.5}, "detections[0].segment", "two numbers"),
    ({"segment": [0, 10], "label": 3, "score": 0.5}, "detections[0].label", "class name"),
    ({"segment": [0, 10], "label": "x", "score": "high"}, "detections[0].score", "number"),
    ({"segment": [0, 10], "label": "x"}, "detections[0].score", "missing"),
    ([0, 10, "x", 0.5], "detections[0]", "expected an object"),
])
def test_malformed_detections_are_rejected_with_video_and_field(detection, field, message):
    with pytest.raises(InputError, match=message) as error:
        Predictions.from_results({"ok": [{"segment": [0, 1], "label": "x", "score": 0.1}],
                                  "bad": [detection]})
    assert error.value.video == "bad" and error.value.field == field


def test_load_predictions_file_errors(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_predictions(path)
    path.write_text(json.dumps({"database": {}}))
    with pytest.raises(InputError, match="'results'"):
        load_predictions(path)
    path.write_text(json.dumps({"results": {"v": {"segment": [0, 1]}}}))
    with pytest.raises(InputError, match="list of detections"):
        load_predictions(path)
    with pytest.raises(InputError, match="not found"):
        load_predictions(tmp_path / "missing.json")


def test_from_arrays_matches_from_results():
    mapping = {"v": ([[0, 10], [20, 30]], [0.9, 0.8], [0, 1]), "w": ([[5, 6]], [0.4], ["b"])}
    from_arrays = Predictions.from_arrays(mapping, classes=["a", "b"])
    from_results = Predictions.from_results(from_arrays.to_results())
    assert from_arrays.to_results() == from_results.to_results()
    assert from_arrays.to_results()["v"][1] == {"segment": [20.0, 30.0], "label": "b",
                                                "score": 0.8}
    with pytest.raises(InputError, match="outside the 2 classes") as error:
        Predictions.from_arrays({"v": ([[0, 1]], [0.5], [2])}, classes=["a", "b"])
    assert error.value.field == "detections[0].label"


def test_caller_input_is_not_modified():
    preds = results([["v", 0, 10, 0.9], ["v", 1, 9, 0.8], ["v", 40, 50, 0.7, "zzz"]])
    before = copy.deepcopy(preds)
    evaluate_detection(ground_truth([["v", 0, 10]]), preds, thresholds=[0.5])
    assert preds == before


def test_metrics_dict_is_json_ready():
    result = evaluate_detection(ground_truth([["v", 0, 10], ["v", 20, 30, "y"]]),
                                results([["v", 0, 10, 0.9], ["v", 20, 24, 0.8, "y"]]),
                                thresholds=ACTIVITYNET_THRESHOLDS)
    metrics = json.loads(json.dumps(result.to_dict()))
    for key in ("thresholds", "mAP", "average_mAP", "per_class", "num_predictions",
                "ignored_predictions", "num_ground_truth", "duplicates_removed",
                "videos_evaluated"):
        assert key in metrics
    assert metrics["thresholds"] == pytest.approx(list(np.linspace(0.5, 0.95, 10)))
    assert metrics["per_class"] == {"x": [1.0] * 10, "y": [0.0] * 10}
    assert metrics["mAP"] == [0.5] * 10 and metrics["average_mAP"] == 0.5


# --- randomised checks -------------------------------------------------------------------

def random_problem(seed: int):
    """A few videos and classes; predictions jitter ground truth or fall anywhere (tie-free)."""
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"][:int(rng.integers(1, 5))]
    gt_rows, pred_rows = [], []
    for v in range(int(rng.integers(1, 6))):
        video = f"vid{v}"
        for _ in range(int(rng.integers(0, 5))):
            start = float(rng.uniform(0, 80))
            gt_rows.append([video, start, start + float(rng.uniform(1, 20)),
                            str(rng.choice(classes))])
        for _ in range(int(rng.integers(0, 25))):
            if gt_rows and rng.random() < 0.6:
                _, g0, g1, label = gt_rows[int(rng.integers(len(gt_rows)))]
                jitter = rng.normal(0, 0.2, 2) * (g1 - g0)
                start, end = g0 + jitter[0], g1 + jitter[1]
                if rng.random() < 0.3:
                    label = str(rng.choice(classes))
            else:
                start = float(rng.uniform(0, 80))
                end, label = start + float(rng.uniform(0.5, 25)), str(rng.choice(classes))
            if end <= start:
                end = start + 0.5
            pred_rows.append([video if rng.random() < 0.9 else "elsewhere", float(start),
                              float(end), float(rng.random()), label])
    if not gt_rows:
        gt_rows.append(["vid0", 1.0, 5.0, classes[0]])
    pred_rows.append([gt_rows[0][0], 0.0, 1.0, float(rng.random()), classes[0]])
    return gt_rows, pred_rows, classes


THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9, 0.95]


def assert_same_per_class(result, expected):
    assert list(result.per_class) == list(expected.per_class)
    for label, values in expected.per_class.items():
        assert result.per_class[label] == pytest.approx(values, abs=1e-12)


def inside_the_video(pred_rows, gt_rows, duration=100.0):
    """The documented rule for segments outside the video, applied to the reference's input:
    predictions on evaluated videos clipped to [0, duration], dropped when wholly outside."""
    evaluated = {r[0] for r in gt_rows}
    fitted = []
    for video, start, end, *rest in pred_rows:
        if video in evaluated:
            start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
            if not end > start:
                continue
        fitted.append([video, start, end, *rest])
    return fitted


@pytest.mark.parametrize("seed", range(30))
def test_random_problems_match_the_loop_by_loop_reference(seed):
    gt_rows, pred_rows, classes = random_problem(seed)
    result = evaluate_detection(ground_truth(gt_rows), results(pred_rows), thresholds=THRESHOLDS,
                                classes=classes)
    pred_rows = inside_the_video(pred_rows, gt_rows)  # some jittered predictions stick out
    for label, values in result.per_class.items():
        gt = [(r[0], r[1], r[2]) for r in gt_rows if r[3] == label]
        preds = [(r[0], r[1], r[2], r[3]) for r in pred_rows if r[4] == label]
        expected = [average_precision(gt, preds, t) for t in THRESHOLDS]
        assert values == pytest.approx(expected, abs=1e-12)
    assert set(result.per_class) == {r[3] for r in gt_rows}


@pytest.mark.parametrize("seed", range(30))
def test_random_problems_properties(seed):
    gt_rows, pred_rows, classes = random_problem(seed)
    gt = ground_truth(gt_rows)
    base = evaluate_detection(gt, results(pred_rows), thresholds=THRESHOLDS, classes=classes)
    per_class = np.asarray(list(base.per_class.values()))  # (K, T)
    assert ((per_class >= 0) & (per_class <= 1)).all()
    assert (np.diff(per_class, axis=1) <= 1e-12).all()  # non-increasing in the threshold

    rng = np.random.default_rng(1000 + seed)
    shuffled = [pred_rows[i] for i in rng.permutation(len(pred_rows))]
    reordered = evaluate_detection(gt, results(shuffled), thresholds=THRESHOLDS, classes=classes)
    assert_same_per_class(reordered, base)

    transformed = [row[:3] + [float(np.exp(4 * row[3]) - 7.0)] + row[4:] for row in pred_rows]
    monotone = evaluate_detection(gt, results(transformed), thresholds=THRESHOLDS,
                                  classes=classes)
    assert_same_per_class(monotone, base)

    extra = pred_rows + [["no_gt_video", 0.0, 10.0, float(rng.random()), gt_rows[0][3]]]
    with_extra = evaluate_detection(gt, results(extra), thresholds=THRESHOLDS, classes=classes)
    for label, values in with_extra.per_class.items():
        assert all(new <= old + 1e-12 for new, old in zip(values, base.per_class[label]))
    assert with_extra.prediction_videos_outside_gt >= 1


def test_many_instances_of_a_class_in_one_video_match_the_reference():
    rng = np.random.default_rng(7)
    starts = np.sort(rng.uniform(0, 900, 40))
    gt_rows = [["dense", float(s), float(s + rng.uniform(2, 30)), "x"] for s in starts]
    gt_rows += [["sparse", 10.0, 20.0, "x"], ["sparse", 30.0, 50.0, "y"]]
    pred_rows = []
    for video, g0, g1, label in gt_rows:
        for _ in range(3):
            jitter = rng.normal(0, 0.15, 2) * (g1 - g0)
            start = g0 + jitter[0]
            pred_rows.append([video, start, max(g1 + jitter[1], start + 0.5),
                              float(rng.random()), label])
    result = evaluate_detection(ground_truth(gt_rows, duration=1000.0), results(pred_rows),
                                thresholds=THRESHOLDS)
    for label in ("x", "y"):
        gt = [(r[0], r[1], r[2]) for r in gt_rows if r[3] == label]
        preds = [(r[0], r[1], r[2], r[3]) for r in pred_rows if r[4] == label]
        expected = [average_precision(gt, preds, t) for t in THRESHOLDS]
        assert result.per_class[label] == pytest.approx(expected, abs=1e-12)
    assert 0.3 < result.per_class["x"][2] < 1.0  # a non-trivial matching at tIoU 0.5
