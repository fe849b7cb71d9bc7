"""One multi-task training iteration: the optimisation core that ``uniav train`` and the
trajectory replay (:mod:`uniav.engine.replay`) share.

An iteration (docs/protocol.md, "the training loop")::

    for each task, in step order, that its plateau gate lets through:
        gradients cleared (set to None: parameters the task does not use are not stepped)
        forward on the task's next batch -> losses (the task's loss normaliser is updated first)
        backward of final_loss x (task lr / base lr)
        clip all gradients to clip_grad_norm (L2), optimizer step (AdamW)
        (on W processes: the loss normaliser counts the global batch's positive points and the
         loss is scaled by W, which DDP's gradient averaging divides back out - the step equals
         the one-process step on the global batch; the logged losses are the global ones)
        EMA update                        <- after every task step, not once per iteration
    one scheduler step                    <- the tasks of an iteration share one learning rate

:class:`TrainingStep` owns the model (and its DistributedDataParallel wrapper), the optimizer
groups, the schedule, the EMA and the loss scales, all built from a
:class:`~uniav.config.TrainConfig` by :meth:`TrainingStep.create`; nothing here knows about
data, validation or checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from uniav.config import TrainConfig
from uniav.engine.distributed import sum_over_processes
from uniav.engine.optim import make_optimizer
from uniav.engine.schedule import ModelEMA, make_scheduler
from uniav.model import UniAV

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    """What one task step produced.

    Attributes:
        losses: ``cls_loss``, ``reg_loss`` and ``final_loss`` (after the loss scale), floats.
        grad_norm: total L2 norm of the gradients before clipping (NaN without clipping).
        lr: the learning rate of the first parameter group during the step.
    """

    losses: dict[str, float]
    grad_norm: float
    lr: float


class TrainingStep:
    """The optimisation state of a run and its per-task step (see module docs).

    Args:
        model: the unwrapped model.
        network: what the forward pass goes through (``model`` or its DDP wrapper).
        optimizer, scheduler, ema: built by :meth:`create`.
        loss_scale: task -> task lr / base lr.
        clip_grad_norm: 0 disables clipping.
        autocast_dtype: ``torch.bfloat16`` for bf16 autocast, else None.
        world_size: processes of the data-parallel group (1: none).
    """

    def __init__(self, model: UniAV, network: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, ema: ModelEMA,
                 loss_scale: dict[str, float], clip_grad_norm: float,
                 autocast_dtype: torch.dtype | None = None, world_size: int = 1):
        self.model = model
        self.network = network
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.ema = ema
        self.loss_scale = loss_scale
        self.clip_grad_norm = clip_grad_norm
        self.autocast_dtype = autocast_dtype
        self.world_size = world_size

    @classmethod
    def create(cls, model: UniAV, train: TrainConfig, tasks: Iterable[str], *,
               warmup_steps: int, total_steps: int, network: nn.Module | None = None,
               autocast_dtype: torch.dtype | None = None,
               world_size: int = 1) -> "TrainingStep":
        """Build the optimizer groups, schedule, EMA and loss scales of a run.

        Args:
            model: the unwrapped model (on its device).
            train: the experiment's training settings.
            tasks: the tasks trained.
            warmup_steps, total_steps: scheduler steps (iterations) of the warm-up and in all.
            network: the DDP wrapper, if any.
            autocast_dtype: bf16 autocast dtype, if any.
            world_size: processes of the data-parallel group.
        """
        lrs = {task: train.lr[task] for task in tasks}
        base_lr = min(lrs.values())
        optimizer = make_optimizer(model, base_lr=base_lr, weight_decay=train.weight_decay,
                                   text_proj_lr=train.text_proj_lr)
        scheduler = make_scheduler(optimizer, warmup_steps, total_steps,
                                   shape=train.warmup_shape, min_lr=train.min_lr)
        ema = ModelEMA(model, train.ema_decay, warmup=train.ema_warmup)
        return cls(model, network or model, optimizer, scheduler, ema,
                   {task: lr / base_lr for task, lr in lrs.items()}, train.clip_grad_norm,
                   autocast_dtype, world_size)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        device_type = next(self.model.parameters()).device.type
        return torch.autocast(device_type, dtype=self.autocast_dtype)

    @property
    def lr(self) -> float:
        """The current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def task_step(self, task: str, visual: torch.Tensor, audio: torch.Tensor,
                  mask: torch.Tensor, segments: list[torch.Tensor],
                  labels: list[torch.Tensor]) -> StepResult:
        """One optimizer step of one task on one batch (see module docs).

        Args:
            task: the task name.
            visual, audio: (B, C, T) padded features; mask: (B, T) bool.
            segments, labels: per video (N_i, 2) grid units and (N_i,) class indices.

        Returns:
            The :class:`StepResult`.
        """
        lr = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            output = self.network(visual, audio, mask, task)
        distributed = self.world_size > 1
        losses = self.model.loss(output, segments, labels, task,
                                 count_reducer=sum_over_processes if distributed else None)
        scale = self.loss_scale[task]
        scaled = {name: value * scale for name, value in losses.items()}
        (scaled["final_loss"] * self.world_size).backward()
        grad_norm = math.nan
        if self.clip_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                             self.clip_grad_norm))
        self.optimizer.step()
        self.ema.update(self.model)
        names = list(scaled)
        values = torch.stack([scaled[name].detach().float() for name in names])  # (3,)
        if distributed:
            values = sum_over_processes(values)   # this rank's share -> the global batch's loss
        return StepResult(dict(zip(names, values.tolist())), grad_norm, lr)

    def iteration(self, tasks: Iterable[str], step: Callable[[str], StepResult | None]
                  ) -> dict[str, StepResult]:
        """Run one iteration: ``step(task)`` for every task in order (it returns None when the
        task's gate holds it back), then one scheduler step.

        Returns:
            task -> :class:`StepResult` of the tasks that stepped.
        """
        results = {}
        for task in tasks:
            result = step(task)
            if result is not None:
                results[task] = result
        self.scheduler.step()
        return results

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, scheduler and EMA state (for checkpoints)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])
