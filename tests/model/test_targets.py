"""Label assignment on hand-made cases (docs/architecture.md, "The network")."""

from __future__ import annotations

import torch

from uniav.model.targets import assign_targets, pad_instances, pyramid_points

RANGES = [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]
STRIDES = [1, 2, 4, 8, 16, 32]


def _assign(segments, labels, num_classes, class_aware, length=32):
    points = pyramid_points(length, STRIDES, RANGES)
    padded, padded_labels, valid = pad_instances(
        [torch.tensor(segments, dtype=torch.float32).reshape(-1, 2)],
        [torch.tensor(labels, dtype=torch.long)])
    cls, reg = assign_targets(points, padded, padded_labels, valid, num_classes, class_aware)
    return points, cls[0], reg[0]


def test_points_layout():
    points = pyramid_points(32, STRIDES, RANGES)
    assert points.level_sizes == [32, 16, 8, 4, 2, 1]
    assert points.positions[32:35].tolist() == [0.0, 2.0, 4.0]    # level 1: t = 0, 2, 4, ...
    assert points.strides[-1].item() == 32.0
    assert points.ranges[-1].tolist() == [64.0, 10000.0]


def test_point_strictly_inside_and_in_range():
    # instance [2, 5] on level 0 (range [0, 4]): points 3 and 4 lie strictly inside;
    # at t=3 the larger distance is 2, at t=4 it is 2; t=2 and t=5 are on the boundary
    points, cls, reg = _assign([[2.0, 5.0]], [1], num_classes=3, class_aware=False)
    level0 = cls[:32, 1]
    assert level0.nonzero().flatten().tolist() == [3, 4]
    assert reg[3].tolist() == [1.0, 2.0] and reg[4].tolist() == [2.0, 1.0]
    # level 1 (stride 2, range [4, 8]): at t=4 distances (2, 1) -> max 2 < 4: negative
    assert cls[32:48].sum() == 0


def test_regression_range_selects_level_and_divides_by_stride():
    # instance [0, 12]: at t=6 (level 1, stride 2) the larger distance 6 is in [4, 8]
    points, cls, reg = _assign([[0.0, 12.0]], [0], num_classes=1, class_aware=False)
    index = 32 + 3                         # level 1, t = 6
    assert points.positions[index].item() == 6.0
    assert cls[index, 0] == 1
    assert reg[index].tolist() == [3.0, 3.0]  # (6, 6) / stride 2
    # at t=6 on level 0 the larger distance 6 is outside [0, 4]
    assert cls[6, 0] == 0


def test_class_agnostic_shortest_instance_wins():
    # long instance [0, 8] (class 0) and short [3, 6] (class 2) both cover t=4 on level 0?
    # t=4: long -> distances (4, 4) max 4 in [0, 4]; short -> (1, 2) max 2: both in range.
    _, cls, reg = _assign([[0.0, 8.0], [3.0, 6.0]], [0, 2], num_classes=3, class_aware=False)
    assert cls[4].tolist() == [0.0, 0.0, 1.0]
    assert reg[4].tolist() == [1.0, 2.0]


def test_class_agnostic_equal_lengths_set_both_classes():
    _, cls, reg = _assign([[1.0, 5.0], [2.0, 6.0]], [0, 1], num_classes=2, class_aware=False)
    # t = 3: both have length 4 and contain the point with max distance <= 4
    assert cls[3].tolist() == [1.0, 1.0]


def test_class_aware_every_instance_sets_its_class_and_target():
    _, cls, reg = _assign([[0.0, 8.0], [3.0, 6.0]], [0, 2], num_classes=3, class_aware=True)
    assert cls[4].tolist() == [1.0, 0.0, 1.0]
    assert reg[4, 0].tolist() == [4.0, 4.0]
    assert reg[4, 2].tolist() == [1.0, 2.0]
    assert reg[4, 1].tolist() == [0.0, 0.0]


def test_class_aware_same_class_shortest_wins():
    _, cls, reg = _assign([[0.0, 8.0], [3.0, 6.0]], [1, 1], num_classes=2, class_aware=True)
    assert cls[4].tolist() == [0.0, 1.0]
    assert reg[4, 1].tolist() == [1.0, 2.0]


def test_no_instances_gives_no_positives():
    points = pyramid_points(32, STRIDES, RANGES)
    padded, labels, valid = pad_instances([torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)])
    for aware in (False, True):
        cls, reg = assign_targets(points, padded, labels, valid, 4, aware)
        assert cls.sum() == 0 and reg.abs().sum() == 0


def test_batch_with_different_instance_counts():
    points = pyramid_points(32, STRIDES, RANGES)
    padded, labels, valid = pad_instances(
        [torch.tensor([[2.0, 5.0]]), torch.tensor([[2.0, 5.0], [10.0, 13.0]])],
        [torch.tensor([0]), torch.tensor([0, 1])])
    cls, _ = assign_targets(points, padded, labels, valid, 2, False)
    assert cls[0, :32].sum() == 2           # one instance: points 3 and 4
    assert cls[1, :32].sum() == 4           # two instances
    assert cls[1, 11, 1] == 1
