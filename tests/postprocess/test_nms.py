"""1-D NMS: the shared reference cases, the notes' vectors, the documented rules, properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_REFERENCE
from uniav.postprocess import batched_nms

NMS_CASES = json.loads((SHARED_REFERENCE / "nms_cases.json").read_text())["cases"]
V8_SEGMENTS = [[0, 10], [1, 11], [20, 30], [0, 10]]
V8_SCORES = [0.9, 0.8, 0.7, 0.6]
V8_LABELS = [0, 0, 0, 1]


def run(segments, scores, labels=None, **kwargs):
    segments = torch.tensor(segments, dtype=torch.float32).reshape(-1, 2)
    scores = torch.tensor(scores, dtype=torch.float32)
    labels = torch.zeros(len(scores), dtype=torch.int64) if labels is None else \
        torch.tensor(labels, dtype=torch.int64)
    return batched_nms(segments, scores, labels, **kwargs)


@pytest.mark.parametrize("case", NMS_CASES, ids=[c["id"] for c in NMS_CASES])
def test_reference_cases(case):
    kwargs = {"method": case["method"], "multiclass": case.get("multiclass", True)}
    for key in ("iou_threshold", "sigma", "min_score"):
        if key in case:
            kwargs[key] = case[key]
    segments, scores, labels = run(case["segments"], case["scores"], case.get("labels"), **kwargs)
    if "keep" in case:
        expected_segments = [case["segments"][i] for i in case["keep"]]
        expected_scores = [case["scores"][i] for i in case["keep"]]
    elif "order" in case:
        expected_segments = [case["segments"][i] for i in case["order"]]
        expected_scores = case["out_scores"]
    else:
        expected_segments, expected_scores = case["out_segments"], case["out_scores"]
        assert labels.tolist() == case["out_labels"]
    assert segments.tolist() == expected_segments
    np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=0, atol=1e-6)
    assert segments.dtype == torch.float32 and scores.dtype == torch.float32
    assert labels.dtype == torch.int64


def test_v2_decayed_score_is_the_gaussian_weight():
    _, scores, _ = run([[0, 10], [1, 11], [20, 30]], [0.9, 0.8, 0.7], sigma=0.5)
    iou = np.float32(9) / (np.float32(10 + 1e-6) * 2 - 9)  # lengths carry the 1e-6
    assert scores[2].item() == pytest.approx(0.8 * math.exp(-iou ** 2 / 0.5), abs=1e-7)
    assert scores[2].item() == pytest.approx(0.2097191, abs=1e-7)


def test_v5_zero_length_segments_never_suppress():
    segments, _, _ = run([[5, 5], [5, 5], [0, 10]], [0.9, 0.8, 0.7], method="hard",
                         iou_threshold=0.1)
    assert segments.tolist() == [[5, 5], [5, 5], [0, 10]]


@pytest.mark.parametrize("threshold, kept", [(1.0, 2), (0.999, 1)])
def test_v6_identical_segments_have_iou_just_below_one(threshold, kept):
    segments, _, _ = run([[0, 10], [0, 10]], [0.9, 0.8], method="hard", iou_threshold=threshold)
    assert len(segments) == kept


def test_v9_class_agnostic_voting():
    segments, scores, labels = run(V8_SEGMENTS, V8_SCORES, V8_LABELS, sigma=0.4,
                                   multiclass=False, voting_threshold=0.75)
    np.testing.assert_allclose(scores.numpy(), [0.9, 0.7, 0.1500635, 0.0092385], atol=1e-6)
    voted = [0.3478261, 10.347826]  # (0.9 [0,10] + 0.8 [1,11] + 0.6 [0,10]) / 2.3
    np.testing.assert_allclose(segments.numpy(), [voted, [20, 30], voted, voted], atol=1e-5)
    assert labels.tolist() == [0, 0, 0, 1]


def test_quirk_v4_not_copied_every_score_at_least_min_score():
    segments, scores, _ = run([[0, 10], [1, 11], [20, 30]], [0.05, 0.04, 0.03], min_score=0.5)
    assert len(segments) == 0 and len(scores) == 0
    _, scores, _ = run([[0, 10], [1, 11], [20, 30]], [0.6, 0.04, 0.55], min_score=0.5)
    assert scores.tolist() == pytest.approx([0.6, 0.55])


def test_quirk_v10_not_copied_nonpositive_cap_means_no_cap():
    for cap in (0, -1):
        segments, _, _ = run(V8_SEGMENTS, V8_SCORES, V8_LABELS, sigma=0.4, max_segments=cap)
        assert len(segments) == 4


def test_quirk_v11_not_copied_voting_never_gives_nan():
    for segments_in, scores_in in (([[5, 5], [0, 10]], [0.9, 0.8]),
                                   ([[0, 10], [2, 12]], [0.0, 0.0]),
                                   ([[0, 10], [0, 10]], [0.9, 0.8])):
        segments, _, _ = run(segments_in, scores_in, min_score=0.0, multiclass=False,
                             voting_threshold=1.0)
        assert torch.isfinite(segments).all()
    segments, _, _ = run([[5, 5], [0, 10]], [0.9, 0.8], multiclass=False, voting_threshold=0.5)
    assert segments.tolist() == [[5, 5], [0, 10]]


def test_max_segments_cap_keeps_the_highest():
    segments, scores, _ = run([[i, i + 1] for i in range(0, 40, 2)],
                              [0.01 * (i + 1) for i in range(20)], max_segments=5)
    assert len(scores) == 5
    np.testing.assert_allclose(scores.numpy(), [0.20, 0.19, 0.18, 0.17, 0.16], atol=1e-7)


def test_method_none_filters_sorts_and_caps():
    segments, scores, labels = run([[0, 10], [0, 10], [1, 11], [2, 3]], [0.2, 0.0005, 0.9, 0.5],
                                   [0, 1, 0, 2], method="none", max_segments=2)
    assert segments.tolist() == [[1, 11], [2, 3]]
    assert labels.tolist() == [0, 2]


def test_ties_emit_the_earlier_input_first():
    # identical scores: the first listed segment is picked and decays the second
    segments, scores, _ = run([[1, 11], [0, 10]], [0.5, 0.5], sigma=0.5)
    assert segments.tolist() == [[1, 11], [0, 10]]
    assert scores[0].item() == 0.5 and scores[1].item() < 0.5
    segments, _, labels = run([[20, 30], [0, 10]], [0.5, 0.5], [3, 1])
    assert labels.tolist() == [3, 1]


def test_hard_nms_never_keeps_overlapping_pairs_of_a_class():
    rng = np.random.default_rng(3)
    starts = rng.uniform(0, 50, 60)
    segments = np.stack([starts, starts + rng.uniform(1, 10, 60)], axis=1)
    labels = rng.integers(0, 3, 60)
    out, _, out_labels = run(segments, rng.random(60), labels, method="hard",
                             iou_threshold=0.4, max_segments=0)
    for k in range(3):
        kept = out[out_labels == k].numpy()
        for i in range(len(kept)):
            for j in range(i + 1, len(kept)):
                inter = max(0.0, min(kept[i, 1], kept[j, 1]) - max(kept[i, 0], kept[j, 0]))
                union = (kept[i, 1] - kept[i, 0]) + (kept[j, 1] - kept[j, 0]) - inter
                assert inter / union < 0.4 + 1e-6


def test_nan_and_inf_scores_are_rejected_with_the_index():
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        run([[0, 1], [2, 3]], [0.5, float("nan")])
    with pytest.raises(ValueError, match=r"scores\[0\]"):
        run([[0, 1], [2, 3]], [float("inf"), 0.5])


def test_reversed_and_non_finite_segments_are_dropped():
    segments, scores, _ = run([[5, 2], [0, float("nan")], [float("-inf"), 3], [0, 10]],
                              [0.9, 0.8, 0.7, 0.6], max_segments=0)
    assert segments.tolist() == [[0, 10]]
    assert scores.tolist() == pytest.approx([0.6])


def test_float64_input_is_cast_to_float32():
    segments = torch.tensor(V8_SEGMENTS, dtype=torch.float64)
    scores = torch.tensor(V8_SCORES, dtype=torch.float64)
    out64 = batched_nms(segments, scores, torch.tensor(V8_LABELS), sigma=0.4)
    out32 = run(V8_SEGMENTS, V8_SCORES, V8_LABELS, sigma=0.4)
    for a, b in zip(out64, out32):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_empty_input():
    segments, scores, labels = batched_nms(torch.zeros((0, 2)), torch.zeros(0),
                                           torch.zeros(0, dtype=torch.int64))
    assert segments.shape == (0, 2) and segments.dtype == torch.float32
    assert scores.shape == (0,) and scores.dtype == torch.float32
    assert labels.shape == (0,) and labels.dtype == torch.int64


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        run([[0, 1]], [0.5], method="linear")
    with pytest.raises(ValueError, match="class-agnostic"):
        run([[0, 1]], [0.5], voting_threshold=0.7)
    with pytest.raises(ValueError, match="sigma"):
        run([[0, 1]], [0.5], sigma=0.0)
    with pytest.raises(ValueError, match="expected segments"):
        batched_nms(torch.zeros((3, 2)), torch.zeros(2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer"):
        batched_nms(torch.zeros((1, 2)), torch.zeros(1), torch.zeros(1))


def naive_soft_nms_one_class(segments: np.ndarray, scores: np.ndarray, sigma: float,
                             min_score: float) -> list[tuple[int, float]]:
    """Element-by-element Gaussian soft-NMS of one class (float32), the documented rules."""
    current = {i: np.float32(s) for i, s in enumerate(scores) if np.float32(s) >= min_score}
    emitted = []
    while current:
        pick = max(current, key=lambda i: (current[i], -i))
        emitted.append((pick, float(current.pop(pick))))
        p0, p1 = segments[pick]
        for j in list(current):
            q0, q1 = segments[j]
            inter = max(np.float32(0), min(p1, q1) - max(p0, q0))
            iou = inter / ((p1 - p0 + np.float32(1e-6)) + (q1 - q0 + np.float32(1e-6)) - inter)
            current[j] = np.float32(current[j] * np.exp(-(iou * iou) / np.float32(sigma)))
            if current[j] < min_score:
                del current[j]
    return emitted


@pytest.mark.parametrize("seed", range(25))
def test_random_inputs_match_a_per_class_element_by_element_soft_nms(seed):
    rng = np.random.default_rng(seed)
    num = int(rng.integers(1, 60))
    starts = rng.uniform(0, 30, num).astype(np.float32)
    segments = np.stack([starts, starts + rng.uniform(0.5, 8, num).astype(np.float32)], axis=1)
    scores = rng.random(num).astype(np.float32)
    labels = rng.integers(0, 4, num)
    sigma, min_score = float(rng.choice([0.4, 0.5, 0.75])), float(rng.choice([0.001, 0.05, 0.2]))
    cap = int(rng.choice([0, 5, 100]))
    out_segments, out_scores, out_labels = run(segments, scores, labels, sigma=sigma,
                                               min_score=min_score, max_segments=cap)
    expected = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        for local, score in naive_soft_nms_one_class(segments[members], scores[members], sigma,
                                                     min_score):
            expected.append((score, members[local]))
    expected.sort(key=lambda item: -item[0])  # tie-free with random float scores
    if cap > 0:
        expected = expected[:cap]
    np.testing.assert_allclose(out_scores.numpy(), [s for s, _ in expected], rtol=1e-6)
    np.testing.assert_array_equal(out_segments.numpy(), segments[[i for _, i in expected]])
    assert out_labels.tolist() == labels[[i for _, i in expected]].tolist()
    # properties: sorted, above min_score, capped
    assert (np.diff(out_scores.numpy()) <= 0).all()
    assert (out_scores.numpy() >= np.float32(min_score)).all()
    assert cap <= 0 or len(out_scores) <= cap
