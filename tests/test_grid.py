"""The time grid: seconds <-> steps, resizing, lengths (hand cases and round trips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uniav.grid import TimeGrid


def test_to_seconds_formula_and_clamping():
    grid = TimeGrid(fps=16, stride=4, window=16)
    steps = torch.tensor([[10.0, 20.0], [-10.0, 1000.0]])
    # (10*4 + 8)/16 = 3, (20*4 + 8)/16 = 5.5; (-40 + 8)/16 < 0 -> 0; 250.5 > 100 -> 100
    assert grid.to_seconds(steps, 100.0).tolist() == [[3.0, 5.5], [0.0, 100.0]]
    as_numpy = grid.to_seconds(steps.numpy().astype(np.float64), 100.0)
    assert isinstance(as_numpy, np.ndarray) and as_numpy.tolist() == [[3.0, 5.5], [0.0, 100.0]]
    assert grid.to_seconds(np.asarray([-10.0]))[0] == pytest.approx(-2.0)  # no duration: no clamp


def test_to_steps_hand_case():
    grid = TimeGrid(fps=16, stride=4, window=16)
    # x = (t * 16 - 8) / 4: 0.5 s -> 0, 3 s -> 10
    assert grid.to_steps([0.5, 3.0]).tolist() == [0.0, 10.0]
    assert grid.offset == 2.0


@pytest.mark.parametrize("stride, window, fps", [
    (16, 16, 30.0),                      # a plain grid
    (4, 16, 16.0),                       # DESED / UnAV-100 style, window > stride
    ((1234 - 1) * 16 / 256 + 16 / 256, (1234 - 1) * 16 / 256 + 16 / 256, 29.97),  # ANet resized
])
def test_round_trip(stride, window, fps):
    grid = TimeGrid(fps=fps, stride=stride, window=window)
    rng = np.random.default_rng(0)
    duration = 500.0
    low, high = grid.to_steps([0.0, duration])
    steps = rng.uniform(low, high, (50, 2))
    seconds = grid.to_seconds(steps, duration)
    np.testing.assert_allclose(grid.to_steps(seconds), steps, rtol=0, atol=1e-9)
    assert (seconds >= 0).all() and (seconds <= duration).all()


def test_resized_grid_keeps_the_formulas():
    stored = TimeGrid(fps=16, stride=8, window=16)
    resized = stored.resized(stored_steps=89, length=256)
    # ((89 - 1) * 8 + 16) / 256 frames per step, window = stride
    assert resized.stride == resized.window == pytest.approx((88 * 8 + 16) / 256)
    # the first and last step cover the same frames before and after resizing
    assert resized.covered_seconds(256) == pytest.approx(stored.covered_seconds(89))
    assert stored.for_video(89, None) is stored and stored.for_video(89, 256) == resized


def test_lengths():
    grid = TimeGrid(fps=16, stride=4, window=16)
    assert grid.steps_of_frames(160) == 37          # a 10 s clip
    assert grid.steps_of_frames(10) == 1            # shorter than a window: one step
    assert grid.expected_steps(10.0) == pytest.approx(37.0)
    assert grid.expected_steps(0.1) == 1.0
    np.testing.assert_allclose(grid.step_centres(3), [0.5, 0.75, 1.0])


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match="fps, stride and window > 0"):
        TimeGrid(fps=0, stride=4, window=16)
    with pytest.raises(ValueError, match="fps, stride and window > 0"):
        TimeGrid(fps=16, stride=0, window=16)
