"""Batch decoding (what inference runs on CUDA) gives exactly the per-video results."""

from __future__ import annotations

import pytest
import torch

from uniav.grid import TimeGrid
from uniav.postprocess import decode_batch, decode_video, postprocess_batch, postprocess_video

# T * K of every level a multiple of 32 floats: on the CPU torch's sigmoid computes a tensor's
# last (size mod vector width) elements on a scalar path that can differ from the vectorised
# one in the last bit, so a video's probabilities are bitwise those of its slice of the batch
# only when no element of the video falls on such a tail (on CUDA every element is computed
# alike; inference decodes batches only there)
LENGTHS, STRIDES, CLASSES = (32, 16, 8), [1, 2, 4], 4


def _outputs(class_aware: bool, *, batch: int = 4, ties: bool = False, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    logits = [torch.randn(batch, t, CLASSES, generator=generator) * 3 - 2 for t in LENGTHS]
    if ties:   # few distinct probabilities: the order among equal scores matters
        logits = [torch.round(level) for level in logits]
    offsets = [torch.rand((batch, t, CLASSES, 2) if class_aware else (batch, t, 2),
                          generator=generator) * 4 for t in LENGTHS]
    masks = []
    for t in LENGTHS:
        mask = torch.ones(batch, t, dtype=torch.bool)
        mask[1, t // 2:] = False            # a shorter video
        if batch > 2:
            mask[2] = False                 # a video without a valid point (no candidates)
        masks.append(mask)
    return logits, offsets, masks


def _video(outputs, index):
    return [[level[index] for level in part] for part in outputs]


@pytest.mark.parametrize("class_aware", [False, True])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("topk", [0, 7, 2000])
def test_decode_batch_is_decode_video_per_video(class_aware, ties, topk):
    outputs = _outputs(class_aware, ties=ties)
    decoded = decode_batch(*outputs, STRIDES, pre_nms_topk=topk, pre_nms_threshold=0.05,
                           duration_threshold=0.5)
    assert len(decoded) == 4
    for index, got in enumerate(decoded):
        expected = decode_video(*_video(outputs, index), STRIDES, pre_nms_topk=topk,
                                pre_nms_threshold=0.05, duration_threshold=0.5)
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype and torch.equal(a, b)
    assert len(decoded[2][0]) == 0 and len(decoded[0][0]) > 0


@pytest.mark.parametrize("class_aware", [False, True])
def test_postprocess_batch_is_postprocess_video_per_video(class_aware):
    outputs = _outputs(class_aware, batch=3)
    grids = [TimeGrid(16.0, 4.0, 16.0), TimeGrid(25.0, 8.0, 16.0), TimeGrid(16.0, 4.0, 16.0)]
    durations = [9.0, 12.5, 3.0]
    settings = {"pre_nms_topk": 30, "sigma": 0.4, "max_segments": 20, "nms_method": "soft"}
    batched = postprocess_batch(*outputs, STRIDES, grids=grids, durations=durations, **settings)
    for index, got in enumerate(batched):
        expected = postprocess_video(*_video(outputs, index), STRIDES, grid=grids[index],
                                     duration=durations[index], **settings)
        for a, b in zip(got, expected):
            assert torch.equal(a, b)


def test_postprocess_batch_checks_the_videos():
    with pytest.raises(ValueError, match="grids"):
        postprocess_batch(*_outputs(False, batch=2), STRIDES, grids=[TimeGrid(16.0, 4.0, 16.0)],
                          durations=[1.0, 2.0])
