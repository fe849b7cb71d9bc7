"""Decoding raw outputs, grid <-> seconds, and the whole per-video post-processing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uniav.grid import TimeGrid
from uniav.postprocess import batched_nms, decode_video, postprocess_video

OFF = -20.0  # sigmoid(-20) ~ 2e-9: below any pre-NMS threshold


def two_level_outputs(class_aware: bool = False):
    """Level 0 (stride 1, T=4) and level 1 (stride 2, T=2), K=2 classes.

    Candidates: level 0 (t=2, k=1, p=0.8) and (t=1, k=0, p=0.5); level 1 (t=1, k=0, p=0.75).
    """
    logits0 = torch.full((4, 2), OFF)
    logits0[1, 0] = 0.0             # p = 0.5
    logits0[2, 1] = math.log(4.0)   # p = 0.8
    logits1 = torch.full((2, 2), OFF)
    logits1[1, 0] = math.log(3.0)   # p = 0.75
    if class_aware:
        offsets0 = torch.zeros((4, 2, 2))
        offsets0[1, 0] = torch.tensor([0.5, 1.5])
        offsets0[1, 1] = torch.tensor([9.0, 9.0])   # other class: must not be used
        offsets0[2, 1] = torch.tensor([1.0, 1.0])
        offsets0[2, 0] = torch.tensor([3.0, 3.0])
        offsets1 = torch.zeros((2, 2, 2))
        offsets1[1, 0] = torch.tensor([0.25, 0.5])
        offsets1[1, 1] = torch.tensor([7.0, 7.0])
    else:
        offsets0 = torch.zeros((4, 2))
        offsets0[1] = torch.tensor([0.5, 1.5])
        offsets0[2] = torch.tensor([1.0, 1.0])
        offsets1 = torch.zeros((2, 2))
        offsets1[1] = torch.tensor([0.25, 0.5])
    masks = [torch.ones(4, dtype=torch.bool), torch.ones(2, dtype=torch.bool)]
    return [logits0, logits1], [offsets0, offsets1], masks, [1, 2]


def test_decode_class_agnostic_hand_case():
    segments, scores, labels = decode_video(*two_level_outputs())
    # level 0: [2 - 1, 2 + 1], [1 - 0.5, 1 + 1.5]; level 1: point 1*2, [2 - 0.25*2, 2 + 0.5*2]
    assert segments.tolist() == [[1.0, 3.0], [0.5, 2.5], [1.5, 3.0]]
    np.testing.assert_allclose(scores.numpy(), [0.8, 0.5, 0.75], rtol=1e-6)
    assert labels.tolist() == [1, 0, 0]
    assert segments.dtype == torch.float32 and labels.dtype == torch.int64


def test_decode_class_aware_gathers_the_offsets_of_the_class():
    logits, offsets, masks, strides = two_level_outputs(class_aware=True)
    logits[0][2, 0] = 0.0  # p = 0.5 at (t=2, k=0): ties with (t=1, k=0), later flat index
    segments, scores, labels = decode_video(logits, offsets, masks, strides)
    assert segments.tolist() == [[1.0, 3.0], [0.5, 2.5], [-1.0, 5.0], [1.5, 3.0]]
    assert labels.tolist() == [1, 0, 0, 0]
    np.testing.assert_allclose(scores.numpy(), [0.8, 0.5, 0.5, 0.75], rtol=1e-6)


def test_masked_points_are_never_candidates():
    logits, offsets, masks, strides = two_level_outputs()
    masks[1] = torch.tensor([True, False])
    segments, _, _ = decode_video(logits, offsets, masks, strides)
    assert segments.tolist() == [[1.0, 3.0], [0.5, 2.5]]


def test_pre_nms_threshold_is_strict():
    segments, scores, _ = decode_video(*two_level_outputs(), pre_nms_threshold=0.5)
    assert segments.tolist() == [[1.0, 3.0], [1.5, 3.0]]  # p = 0.5 exactly is dropped
    segments, _, _ = decode_video(*two_level_outputs(), pre_nms_threshold=0.79)
    assert segments.tolist() == [[1.0, 3.0]]


def test_pre_nms_topk_is_per_level_and_keeps_the_highest():
    probs = torch.tensor([0.6, 0.9, 0.5, 0.8, 0.7])
    logits = torch.log(probs / (1 - probs)).reshape(5, 1)
    offsets = torch.ones((5, 2))
    masks = torch.ones(5, dtype=torch.bool)
    segments, scores, _ = decode_video([logits, logits], [offsets, offsets], [masks, masks],
                                       [1, 2], pre_nms_topk=2)
    np.testing.assert_allclose(scores.numpy(), [0.9, 0.8, 0.9, 0.8], rtol=1e-6)
    assert segments.tolist() == [[0, 2], [2, 4], [0, 4], [4, 8]]  # points 1, 3 at stride 1, 2
    _, scores, _ = decode_video([logits], [offsets], [masks], [1], pre_nms_topk=0)
    assert len(scores) == 5  # <= 0: no cap


def test_duration_filter_is_in_grid_units_after_the_stride():
    logits = torch.zeros((1, 1))
    offsets = torch.tensor([[0.01, 0.02]])  # extent 0.03 at stride 1, 0.12 at stride 4
    masks = torch.ones(1, dtype=torch.bool)
    segments, _, _ = decode_video([logits, logits], [offsets, offsets], [masks, masks], [1, 4])
    np.testing.assert_allclose(segments.numpy(), [[-0.04, 0.08]], atol=1e-7)
    segments, _, _ = decode_video([logits], [offsets], [masks], [1], duration_threshold=0.02)
    assert len(segments) == 1


def test_decode_rejects_inconsistent_shapes():
    logits, offsets, masks, strides = two_level_outputs()
    with pytest.raises(ValueError, match="offsets"):
        decode_video(logits, [offsets[0], torch.zeros((3, 2))], masks, strides)
    with pytest.raises(ValueError, match="mask"):
        decode_video(logits, offsets, [masks[0], torch.ones(5, dtype=torch.bool)], strides)
    with pytest.raises(ValueError, match="one logits"):
        decode_video(logits, offsets, masks, [1])


def test_decode_with_nothing_above_threshold_is_empty():
    logits = torch.full((8, 3), OFF)
    segments, scores, labels = decode_video([logits], [torch.ones((8, 2))],
                                            [torch.ones(8, dtype=torch.bool)], [1])
    assert segments.shape == (0, 2) and scores.shape == (0,) and labels.dtype == torch.int64


GRID = TimeGrid(fps=16.0, stride=4, window=16)  # t = x / 4 + 0.5


def test_postprocess_video_hand_case():
    segments, scores, labels = postprocess_video(*two_level_outputs(), sigma=0.5, duration=1.2,
                                                 grid=GRID)
    # class 0: [1.5, 3]@0.75 picked, decays [0.5, 2.5]@0.5 by exp(-0.4^2 / 0.5) (IoU 1/2.5)
    np.testing.assert_allclose(scores.numpy(), [0.8, 0.75, 0.5 * math.exp(-0.16 / 0.5)],
                               rtol=1e-5)
    assert labels.tolist() == [1, 0, 0]
    # grid -> seconds, then clamped to the 1.2 s video
    np.testing.assert_allclose(segments.numpy(), [[0.75, 1.2], [0.875, 1.2], [0.625, 1.125]],
                               atol=1e-6)


def test_postprocess_video_drops_segments_outside_the_video():
    segments, _, _ = postprocess_video(*two_level_outputs(), duration=0.7, grid=GRID)
    # [0.75, 1.25] and [0.875, 1.25] collapse to [0.7, 0.7]; only [0.625, 0.7] remains
    np.testing.assert_allclose(segments.numpy(), [[0.625, 0.7]], atol=1e-6)


@pytest.mark.parametrize("class_aware", [False, True])
def test_postprocess_video_is_decode_then_nms_then_seconds(class_aware):
    generator = torch.Generator().manual_seed(1)
    lengths, num_classes = (32, 16, 8), 5
    logits = [torch.randn(t, num_classes, generator=generator) * 3 - 2 for t in lengths]
    offsets = [torch.rand((t, num_classes, 2) if class_aware else (t, 2), generator=generator) * 4
               for t in lengths]
    masks = [torch.arange(t) < t - 2 for t in lengths]
    settings = {"pre_nms_topk": 30, "sigma": 0.4, "max_segments": 20}
    segments, scores, labels = postprocess_video(logits, offsets, masks, [1, 2, 4],
                                                 duration=9.0, grid=GRID, **settings)
    decoded = decode_video(logits, offsets, masks, [1, 2, 4], pre_nms_topk=30)
    nms_segments, nms_scores, nms_labels = batched_nms(*decoded, sigma=0.4, max_segments=20)
    expected = GRID.to_seconds(nms_segments, 9.0)
    inside = expected[:, 1] > expected[:, 0]
    assert torch.equal(segments, expected[inside]) and torch.equal(scores, nms_scores[inside])
    assert torch.equal(labels, nms_labels[inside])
    assert 0 < len(scores) <= 20 and (scores[:-1] >= scores[1:]).all()
