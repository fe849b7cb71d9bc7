"""Learning-rate schedule, EMA of the weights and the per-task plateau gate (docs/protocol.md)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier of the standard shape: linear warm-up from 0 over ``warmup_steps`` (the
    base is reached at ``warmup_steps``), then cosine decay to 0 at ``total_steps`` (the
    scheduler steps once per iteration)."""
    if step < warmup_steps:
        return step / max(warmup_steps, 1)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def released_warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                              min_lr: float) -> float:
    """The released ``LinearWarmupCosineAnnealingLR`` (warm-up start 0), in closed form.

    ``t < W``: ``t·base / (W − 1)`` - the base is reached one iteration before the warm-up ends
    and held at ``t = W``; then ``min_lr + (base − min_lr)(1 + cos(π (t − W)/(T − W)))/2``.
    (The released scheduler computes this recursively; the closed form reproduces its values
    to the last bit or one unit in the last place.)
    """
    if step < warmup_steps:
        return step * base_lr / max(warmup_steps - 1, 1)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return min_lr + (base_lr - min_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0))) / 2.0


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up, then cosine decay, stepped once per iteration.

    Args:
        optimizer: the optimizer (each group keeps its own base lr).
        warmup_steps: iterations of the warm-up.
        total_steps: iterations in all.
        shape: ``standard`` (:func:`warmup_cosine_factor`, plus ``min_lr`` as the cosine floor)
            or ``released`` (:func:`released_warmup_cosine_lr`).
        min_lr: the floor of the cosine decay.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                 shape: str = "standard", min_lr: float = 0.0):
        if shape not in ("standard", "released"):
            raise ValueError(f"unknown warm-up shape {shape!r}")
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.shape, self.min_lr = shape, min_lr
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        """The learning rate of a group with base ``base_lr`` at iteration ``step``."""
        if self.shape == "released":
            return released_warmup_cosine_lr(step, base_lr, self.warmup_steps, self.total_steps,
                                             self.min_lr)
        factor = warmup_cosine_factor(step, self.warmup_steps, self.total_steps)
        if self.min_lr and step >= self.warmup_steps:
            return self.min_lr + (base_lr - self.min_lr) * factor
        return base_lr * factor

    def get_lr(self) -> list[float]:  # noqa: D102 - torch's interface
        return [self.lr_at(self.last_epoch, base) for base in self.base_lrs]


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, *,
                   shape: str = "standard", min_lr: float = 0.0) -> WarmupCosineLR:
    """The warm-up + cosine schedule of every parameter group (:class:`WarmupCosineLR`)."""
    return WarmupCosineLR(optimizer, warmup_steps, total_steps, shape, min_lr)


class ModelEMA:
    """Exponential moving average of a model's parameters (buffers are copied, not averaged).

    With ``warmup`` the decay used at update ``n`` is ``min(decay, (1 + n) / (10 + n))`` so that
    short runs are not dominated by the initial weights; at the paper's scale (thousands of
    updates) it equals ``decay`` after the first few hundred updates.

    Args:
        model: the (unwrapped) model to follow.
        decay: the EMA decay.
        warmup: use the warm-up rule above.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``: ``ema.lerp_(param, 1 - decay)`` for
        every parameter and a copy of every buffer, as multi-tensor operations (a few kernel
        launches on CUDA instead of two per tensor; on the CPU the same per-tensor arithmetic)."""
        decay = self.current_decay()
        ema_params = list(self.module.parameters())
        params = [param.detach() for param in model.parameters()]
        if len(ema_params) != len(params):
            raise ValueError("the EMA model and the model have different parameters")
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        ema_buffers, buffers = list(self.module.buffers()), list(model.buffers())
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, buffers)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


class PlateauGate:
    """Per-task gate on validation mAP: once a task plateaus it trains only every
    ``iteration_gap``-th iteration, until its metric degrades again.

    Semantics of the released implementation's ``MultiTaskStopOnPlateau(mode="max")``: a value
    is *better* when it exceeds ``best * (1 + threshold)``; after more than ``patience``
    epochs without improvement the task enters the gated state (and a cooldown starts, during
    which bad epochs are not counted); a gated task is released when its value falls below
    ``best * (1 - continue_threshold)``.
    """

    def __init__(self, patience: int = 1, threshold: float = 0.001,
                 continue_threshold: float = 0.005, cooldown: int = 1):
        self.patience = patience
        self.threshold = threshold
        self.continue_threshold = continue_threshold
        self.cooldown = cooldown
        self.best = -math.inf
        self.bad_epochs = 0
        self.cooldown_counter = 0
        self.gated = False

    def step(self, value: float) -> None:
        """Record one validation value (higher is better)."""
        if value > self.best * (1.0 + self.threshold):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            self.gated = True
            self.cooldown_counter = self.cooldown
            self.bad_epochs = 0
        elif self.gated and value < self.best * (1.0 - self.continue_threshold):
            self.gated = False
            self.cooldown_counter = self.cooldown
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs,
                "cooldown_counter": self.cooldown_counter, "gated": self.gated}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.gated = bool(state["gated"])
