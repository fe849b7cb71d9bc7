"""The array matching and AP (``uniav.evaluation.matching``) give, bit for bit, what the
loop-by-loop protocol gives (``naive_reference``) - for groups of one instance (matched in closed
form) and of many (matched rank by rank, padded to 2, 4, 8, ... slots), with score and tIoU ties,
and for one threshold or many (the AP is summed in rank order whatever the number of
thresholds)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tests.evaluation.naive_reference import average_precision as naive_average_precision
from uniav.data.annotations import VideoAnnotation
from uniav.evaluation import Predictions, evaluate_detection
from uniav.evaluation.matching import score_order


def bits(values) -> list[bytes]:
    return [struct.pack("<d", float(v)) for v in values]


def random_problem(seed: int):
    """Videos whose (video, class) groups hold 1 to 20 instances; quantised segments and scores
    for ties; predictions near instances (often several per instance, so fallbacks happen)."""
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    videos, predictions = [], {}
    quantise = seed % 2 == 0
    for v in range(int(rng.integers(1, 6))):
        video = f"v{v}"
        instances = int(rng.choice([1, 1, 2, 3, 5, 9, 20]))
        starts = rng.uniform(0, 180, instances)
        segments = np.stack([starts, starts + rng.uniform(1, 15, instances)], axis=1)
        if quantise:
            segments = np.round(segments)
        segments[:, 1] = np.maximum(segments[:, 1], segments[:, 0] + 1)
        labels = tuple(str(rng.choice(classes[:2])) for _ in range(instances))
        videos.append(VideoAnnotation(video, "test", 200.0, None, segments, labels))
        rows = []
        for _ in range(int(rng.integers(1, 4 * instances + 5))):
            if rng.random() < 0.7:
                i = int(rng.integers(instances))
                g0, g1 = segments[i]
                jitter = rng.normal(0, 0.2, 2) * (g1 - g0)
                start, end = g0 + jitter[0], g1 + jitter[1]
                label = labels[i] if rng.random() < 0.85 else str(rng.choice(classes))
            else:
                start = rng.uniform(0, 190)
                end, label = start + rng.uniform(0.5, 20), str(rng.choice(classes))
            if quantise:
                start, end = round(start), round(end)
            start, end = min(max(start, 0.0), 200.0), min(max(end, 0.0), 200.0)
            if end <= start:
                end = start + 1.0
            score = float(np.round(rng.random(), 1) if quantise else rng.random())
            rows.append({"segment": [float(start), float(end)], "label": label, "score": score})
        predictions[video] = rows
    return videos, predictions, classes


def reference(videos, predictions, label, threshold):
    gt = [(video.video_id, float(g0), float(g1)) for video in videos
          for (g0, g1), name in zip(video.segments.tolist(), video.labels) if name == label]
    preds = [(video, d["segment"][0], d["segment"][1], d["score"])
             for video, rows in predictions.items() for d in rows if d["label"] == label]
    return naive_average_precision(gt, preds, threshold)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("thresholds", [[0.5], [0.3, 0.7], [float(t) for t in
                                                             np.linspace(0.5, 0.95, 10)]])
def test_ap_equals_the_loop_by_loop_protocol_bit_for_bit(seed, thresholds):
    videos, predictions, classes = random_problem(seed)
    if not any(video.labels for video in videos):
        return
    result = evaluate_detection(videos, Predictions.from_results(predictions),
                                thresholds=thresholds, classes=classes)
    for label, values in result.per_class.items():
        expected = [reference(videos, predictions, label, t) for t in thresholds]
        assert bits(values) == bits(expected), (label, values, expected)


def test_one_threshold_sums_in_rank_order():
    # ranked hits F T T T T T F T over 6 instances: summing the AP terms pairwise (np.sum of one
    # column) gives 0.8194444444444444; the protocol's running sum gives 0.8194444444444445
    segments = np.array([[10.0 * i, 10.0 * i + 5] for i in range(6)])
    videos = [VideoAnnotation("v", "test", 100.0, None, segments, ("x",) * 6)]
    pattern, instance, rows = "FTTTTTFT", 0, []
    for rank, hit in enumerate(pattern):
        if hit == "T":
            segment, instance = segments[instance].tolist(), instance + 1
        else:
            segment = [80.0 + rank, 81.0 + rank]
        rows.append({"segment": segment, "label": "x", "score": 1.0 - rank / 10})
    for thresholds in ([0.5], [0.5, 0.6]):
        result = evaluate_detection(videos, Predictions.from_results({"v": rows}),
                                    thresholds=thresholds)
        assert result.per_class["x"][0] == 0.8194444444444445
        gt = [("v", g0, g1) for g0, g1 in segments.tolist()]
        preds = [("v", *d["segment"], d["score"]) for d in rows]
        assert result.per_class["x"][0] == naive_average_precision(gt, preds, 0.5)


def test_score_order_is_descending_with_ties_in_input_order():
    scores = np.array([0.5, 0.9, 0.5, -0.0, 0.9, 0.0, 0.1])
    assert score_order(scores).tolist() == [1, 4, 0, 2, 6, 3, 5]
    rng = np.random.default_rng(3)
    for scores in (rng.random(10_000), np.round(rng.random(10_000), 2), rng.normal(size=7)):
        assert score_order(scores).tolist() == np.argsort(-scores, kind="stable").tolist()
