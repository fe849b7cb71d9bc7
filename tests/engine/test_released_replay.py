"""The training trajectory pinned to the released implementation.

``tests/fixtures/reference/original_train_steps*/`` record multi-task training runs of the
released code (their READMEs say what and how).  :func:`uniav.engine.replay.replay_train_steps`
replays them through this project's training code under ``protocol: released``; every tolerance
of the fixtures' READMEs must hold.  The last tests show that the tolerances catch the likely
mistakes (an EMA with warm-up, another warm-up shape, another task order).
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT, SHARED_REFERENCE
from uniav.config import load_config
from uniav.engine.replay import replay_train_steps

FIXTURES = ["original_train_steps", "original_train_steps_scaled"]


def _released(*overrides: str):
    return load_config(REPO_ROOT / "params.yaml", ["protocol=released", *overrides])


@pytest.fixture(scope="module", params=FIXTURES)
def replay(request):
    return request.param, replay_train_steps(SHARED_REFERENCE / request.param, _released())


def test_released_replay_follows_the_recorded_schedule(replay):
    name, result = replay
    assert result["schedule_equal"], name
    assert result["steps"] == {"original_train_steps": 18, "original_train_steps_scaled": 36}[name]


def test_released_learning_rates_are_exact(replay):
    _, result = replay
    assert result["max_abs_err_lr"] <= 1e-12 * 2e-3  # 1e-12 relative to the largest lr


def test_released_losses_normalisers_and_gradient_norms(replay):
    _, result = replay
    assert result["max_rel_err_loss_normalizer"] <= 1e-6
    assert result["max_rel_err_loss_first_iteration"] <= 1e-5
    assert result["max_rel_err_loss"] <= 1e-4
    assert result["max_rel_err_grad_norm"] <= 1e-3


def test_released_final_weights(replay):
    _, result = replay
    assert result["max_rel_err_params"] <= 1e-3       # per tensor
    assert result["max_rel_err_params_all"] <= 1e-4   # over all tensors at once
    assert result["max_rel_err_ema"] <= 1e-4


def test_released_optimizer_groups_and_step_counts_are_exact(replay):
    _, result = replay
    assert result["param_groups_equal"]
    assert result["adam_step_counts_equal"]


@pytest.mark.parametrize("override, breaks", [
    ("train.ema_warmup=true", "max_rel_err_ema"),           # EMA with warm-up: 0.2 off
    ("train.warmup_shape=standard", "max_abs_err_lr"),      # t/W instead of t/(W-1)
    ("train.min_lr=0.0", "max_abs_err_lr"),                 # cosine floor 0 instead of 1e-8
])
def test_released_tolerances_catch_the_likely_mistakes(override, breaks):
    result = replay_train_steps(SHARED_REFERENCE / FIXTURES[0], _released(override))
    limit = {"max_rel_err_ema": 1e-4, "max_abs_err_lr": 1e-12 * 2e-3}[breaks]
    assert result[breaks] > limit


def test_released_task_order_is_pinned():
    result = replay_train_steps(SHARED_REFERENCE / FIXTURES[0],
                                _released("train.task_order=[tal, sed, avel]"))
    assert not result["schedule_equal"] and result["max_rel_err_loss"] > 1e-4


def test_released_replay_refuses_another_protocol():
    from uniav.errors import InputError

    with pytest.raises(InputError, match="protocol 'clean'"):
        replay_train_steps(SHARED_REFERENCE / FIXTURES[0],
                           load_config(REPO_ROOT / "params.yaml"))
