"""SED extras: the conversion anchor of the notes (A.3.3) and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from uniav.data.annotations import VideoAnnotation
from uniav.errors import InputError
from uniav.evaluation.sed import events_at_threshold, merge_events, score_table, sed_extras


def clip(clip_id, events, duration=10.0):
    """events: [(onset, offset, label)]."""
    return VideoAnnotation(clip_id, "eval", duration, None,
                           np.asarray([e[:2] for e in events], dtype=float).reshape(-1, 2),
                           tuple(e[2] for e in events))


def detections(per_clip):
    """{clip: [(onset, offset, label, score)]} -> results mapping."""
    return {"results": {c: [{"segment": [a, b], "label": label, "score": s}
                            for a, b, label, s in rows] for c, rows in per_clip.items()}}


def test_notes_anchor_collar_f1_and_psds():
    # docs/evaluation.md (SED extras): two 10-s clips, classes Dog/Speech
    gt = [clip("f1", [(1, 3, "Dog"), (5, 9, "Speech")]), clip("f2", [(0, 4, "Speech")])]
    preds = detections({"f1": [(1.1, 3.1, "Dog", 0.9), (5, 8, "Speech", 0.8),
                               (6, 9.5, "Speech", 0.3)],
                        "f2": [(0.2, 4, "Speech", 0.7), (6, 7, "Dog", 0.6)]})
    extras = sed_extras(gt, preds, ["Dog", "Speech"])
    assert extras["collar_f1_per_class"] == pytest.approx({"Dog": 2 / 3, "Speech": 0.5})
    assert extras["collar_f1_macro"] == pytest.approx(0.5833, abs=5e-5)
    assert extras["collar_f1_micro"] == pytest.approx(0.5714, abs=5e-5)
    # for thresholds in (0.6, 0.7] every event is hit with no false positive
    assert extras["psds1"] == pytest.approx(1.0)
    assert extras["psds2"] == pytest.approx(1.0)
    assert extras["kind"] == "extras"
    assert extras["decision_threshold"] == 0.5 and extras["collar_seconds"] == 0.2
    assert extras["offset_collar_rate"] == 0.2


def test_psds_drops_clips_without_events_and_f1_keeps_them():
    # Two one-hour clips with events and one without.  PSDS (clips with events only, 2 h):
    # Dog's TP (score 0.4) comes only after its FP (0.9): TPR 0 until eFPR 0.5/h, then 1;
    # Speech has TPR 1 at eFPR 0.  Mean - std over classes: 0 below eFPR 0.5, 1 above, so
    # PSDS = (100 - 0.5) / 100 = 0.995; the cross-triggers of PSDS2 are empty -> same value.
    gt = [clip("c1", [(0, 4, "Dog")], 3600.0), clip("c2", [(10, 20, "Speech")], 3600.0),
          clip("silent", [], 3600.0)]
    preds = detections({"c1": [(0, 4, "Dog", 0.4), (100, 104, "Dog", 0.9)],
                        "c2": [(10, 20, "Speech", 0.8)],
                        "silent": [(1, 2, "Speech", 0.95)]})
    extras = sed_extras(gt, preds, ["Dog", "Speech"])
    assert extras["psds1"] == pytest.approx(0.995)
    assert extras["psds2"] == pytest.approx(0.995)
    assert extras["psds_clips"] == 2 and extras["clips_without_gt_events"] == 1
    # F1 at 0.5: Dog TP 0 / FP 1 / FN 1 -> 0; Speech TP 1 / FP 1 (the silent clip) -> 2/3
    assert extras["collar_f1_per_class"] == pytest.approx({"Dog": 0.0, "Speech": 2 / 3})
    assert extras["collar_f1_macro"] == pytest.approx(1 / 3)
    assert extras["collar_f1_micro"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))


def test_single_class_psds():
    # one hour, one FP at 0.9 before the TP at 0.4: TPR 0 below eFPR 1/h, 1 above -> 0.99
    gt = [clip("long", [(0, 4, "Dog")], 3600.0)]
    preds = detections({"long": [(0, 4, "Dog", 0.4), (100, 104, "Dog", 0.9)]})
    extras = sed_extras(gt, preds, ["Dog"])
    assert extras["psds1"] == pytest.approx(0.99)
    assert extras["psds2"] == pytest.approx(0.99)


def test_overlapping_same_class_detections_are_one_event():
    gt = [clip("a", [(5, 9, "Speech")]), clip("b", [(1, 2, "Dog")])]
    union = detections({"a": [(5, 7, "Speech", 0.8), (6.5, 9, "Speech", 0.7)],
                        "b": [(1, 2, "Dog", 0.9)]})
    assert sed_extras(gt, union, ["Dog", "Speech"])["collar_f1_micro"] == pytest.approx(1.0)
    # below the threshold the second half is inactive: (5, 7) misses the 0.8 s offset collar
    partial = detections({"a": [(5, 7, "Speech", 0.8), (6.5, 9, "Speech", 0.4)],
                          "b": [(1, 2, "Dog", 0.9)]})
    extras = sed_extras(gt, partial, ["Dog", "Speech"])
    assert extras["collar_f1_per_class"]["Speech"] == 0.0


@pytest.mark.parametrize("onset, offset, score, hit", [
    (0.15, 5.0, 0.9, True),    # onset within the 0.2 s collar
    (0.25, 5.0, 0.9, False),   # onset outside it
    (0.0, 5.9, 0.9, True),     # offset collar = max(0.2, 20 % of 5 s) = 1 s
    (0.0, 6.1, 0.9, False),
    (0.0, 5.0, 0.5, False),    # active only when score > threshold
    (0.0, 5.0, 0.51, True),
])
def test_collar_rules(onset, offset, score, hit):
    gt = [clip("a", [(0, 5, "Dog")]), clip("b", [(2, 3, "Cat")])]
    preds = detections({"a": [(onset, offset, "Dog", score)], "b": [(2, 3, "Cat", 0.9)]})
    extras = sed_extras(gt, preds, ["Dog", "Cat"])
    assert extras["collar_f1_per_class"]["Dog"] == (1.0 if hit else 0.0)


def test_unscorable_detections_are_counted():
    gt = [clip("a", [(0, 5, "Dog"), (6, 8, "Cat")])]
    preds = detections({"a": [(0, 5, "Dog", 0.9), (6, 8, "Cat", 0.9), (1, 2, "Bird", 0.9),
                              (2, 3, "Yeti", 0.9), (11, 12, "Dog", 0.9), (9, 12, "Cat", 0.9)],
                        "other": [(0, 5, "Dog", 0.9)]})
    extras = sed_extras(gt, preds, ["Dog", "Cat", "Bird"])
    assert extras["ignored_predictions"] == {"unknown_label": 1, "class_without_gt_events": 1,
                                             "clip_not_evaluated": 1, "outside_clip": 1}
    assert extras["classes_scored"] == ["Dog", "Cat"]
    assert extras["detections_scored"] == 3  # (9, 12) is clipped to (9, 10) and kept
    # the clipped Cat detection is a false positive
    assert extras["collar_f1_per_class"] == pytest.approx({"Dog": 1.0, "Cat": 2 / 3})


def test_no_events_at_all_is_an_input_error():
    with pytest.raises(InputError, match="no evaluated clip has a ground-truth event"):
        sed_extras([clip("a", [])], detections({"a": [(0, 1, "Dog", 0.9)]}), ["Dog"])


def test_overlapping_ground_truth_events_of_a_class_are_merged():
    segments = np.array([[5, 9], [5, 9], [8, 10], [11, 12], [0, 1], [12, 13]], dtype=float)
    labels = ("S", "S", "S", "S", "D", "D")
    events, merged = merge_events(segments, labels)
    assert events == [(0.0, 1.0, "D"), (12.0, 13.0, "D"), (5.0, 10.0, "S"), (11.0, 12.0, "S")]
    assert merged == 2
    gt = [clip("a", list(zip(segments[:, 0], segments[:, 1], labels)), duration=20.0)]
    preds = detections({"a": [(5, 10, "S", 0.9), (11, 12, "S", 0.9), (0, 1, "D", 0.9),
                              (12, 13, "D", 0.9)]})
    extras = sed_extras(gt, preds, ["D", "S"])
    assert extras["gt_events_merged"] == 2 and extras["collar_f1_micro"] == 1.0


def test_score_table_hand_case():
    segments = np.array([[1, 3], [2, 5], [4, 6]], dtype=float)
    timestamps, table = score_table(segments, np.array([0.9, 0.6, 0.7]), np.array([0, 0, 1]),
                                    2, 10.0)
    assert timestamps.tolist() == [0, 1, 2, 3, 4, 5, 6, 10]
    assert table[:, 0].tolist() == [0, 0.9, 0.9, 0.6, 0.6, 0, 0]
    assert table[:, 1].tolist() == [0, 0, 0, 0, 0.7, 0.7, 0]
    assert events_at_threshold(timestamps, table, ["Dog", "Speech"], 0.5) == [
        (1.0, 5.0, "Dog"), (4.0, 6.0, "Speech")]
    assert events_at_threshold(timestamps, table, ["Dog", "Speech"], 0.65) == [
        (1.0, 3.0, "Dog"), (4.0, 6.0, "Speech")]


def union_of_intervals(intervals):
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [tuple(m) for m in merged]


@pytest.mark.parametrize("seed", range(10))
def test_thresholded_table_is_the_union_of_segments_above_threshold(seed):
    rng = np.random.default_rng(seed)
    num = int(rng.integers(1, 30))
    starts = np.round(rng.uniform(0, 9, num), 3)
    segments = np.stack([starts, np.minimum(starts + np.round(rng.uniform(0.1, 3, num), 3), 10)],
                        axis=1)
    scores, classes = rng.random(num), rng.integers(0, 3, num)
    timestamps, table = score_table(segments, scores, classes, 3, 10.0)
    threshold = float(rng.uniform(0.2, 0.8))
    events = events_at_threshold(timestamps, table, ["a", "b", "c"], threshold)
    for k, name in enumerate(["a", "b", "c"]):
        expected = union_of_intervals([tuple(s) for s, c, p in zip(segments.tolist(), classes,
                                                                    scores)
                                       if c == k and p > threshold])
        found = [(a, b) for a, b, label in events if label == name]
        assert len(found) == len(expected)
        np.testing.assert_allclose(np.reshape(found, (-1, 2)), np.reshape(expected, (-1, 2)),
                                   atol=1e-9)
