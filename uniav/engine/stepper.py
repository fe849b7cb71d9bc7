"""One multi-task training iteration: the optimisation core that ``uniav train`` and the
trajectory replay (:mod:`uniav.engine.replay`) share.

An iteration (docs/protocol.md, "the training loop")::

    for each task, in step order, that its plateau gate lets through:
        gradients cleared (set to None: parameters the task does not use are not stepped)
        forward on the task's next batch -> loss sums (fixed shapes; compiled with train.compile)
        -> losses (the task's loss normaliser is updated first, then divides the sums)
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
data, validation or checkpoints.  With ``train.compile`` the forward pass and the loss sums of
each task run as one compiled graph (:mod:`uniav.engine.capture`: CUDA graphs on CUDA, a logged
fallback to eager mode when compiling fails).  A step reads its results back to the host once
(losses and gradient norm together).
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
from uniav.engine.capture import (CapturedLoss, compile_enabled, describe, restore_rng,
                                  rng_snapshot)
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


class CompileError(RuntimeError):
    """``train.compile: on`` and ``torch.compile`` of the training step failed."""


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
        captured: the compiled forward + loss sums (:class:`~uniav.engine.capture.CapturedLoss`),
            or None for eager mode.
    """

    def __init__(self, model: UniAV, network: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, ema: ModelEMA,
                 loss_scale: dict[str, float], clip_grad_norm: float,
                 autocast_dtype: torch.dtype | None = None, world_size: int = 1,
                 captured: CapturedLoss | None = None):
        self.model = model
        self.network = network
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.ema = ema
        self.loss_scale = loss_scale
        self.clip_grad_norm = clip_grad_norm
        self.autocast_dtype = autocast_dtype
        self.world_size = world_size
        self.captured = captured
        self.compile_fallback: str | None = None   # why compiling failed, if it did
        self.compile_required = False              # train.compile: on (failures raise)
        self._captured_ok: set[str] = set()        # tasks whose first compiled step succeeded
        self._parameters = [p for p in model.parameters() if p.requires_grad]
        self.device = next(model.parameters()).device

    @classmethod
    def create(cls, model: UniAV, train: TrainConfig, tasks: Iterable[str], *,
               warmup_steps: int, total_steps: int, network: nn.Module | None = None,
               autocast_dtype: torch.dtype | None = None, world_size: int = 1,
               compile: bool | str | None = None, compile_backend: str = "inductor",
               compile_mode: str | None = None) -> "TrainingStep":
        """Build the optimizer groups, schedule, EMA and loss scales of a run.

        Args:
            model: the unwrapped model (on its device).
            train: the experiment's training settings.
            tasks: the tasks trained.
            warmup_steps, total_steps: scheduler steps (iterations) of the warm-up and in all.
            network: the DDP wrapper, if any.
            autocast_dtype: bf16 autocast dtype, if any.
            world_size: processes of the data-parallel group.
            compile: False (``off``) / ``"auto"`` / True (``on``) (default: ``train.compile``):
                ``auto`` compiles on CUDA only and trains eagerly (one logged warning) when
                compiling fails; ``on`` compiles on any device and raises
                :class:`CompileError` when compiling fails.  Data-parallel runs
                (``world_size > 1``) stay in eager mode.
            compile_backend, compile_mode: passed to ``torch.compile`` (default: inductor;
                CUDA graphs on CUDA).
        """
        lrs = {task: train.lr[task] for task in tasks}
        base_lr = min(lrs.values())
        optimizer = make_optimizer(model, base_lr=base_lr, weight_decay=train.weight_decay,
                                   text_proj_lr=train.text_proj_lr)
        scheduler = make_scheduler(optimizer, warmup_steps, total_steps,
                                   shape=train.warmup_shape, min_lr=train.min_lr)
        ema = ModelEMA(model, train.ema_decay, warmup=train.ema_warmup)
        step = cls(model, network or model, optimizer, scheduler, ema,
                   {task: lr / base_lr for task, lr in lrs.items()}, train.clip_grad_norm,
                   autocast_dtype, world_size)
        setting = train.compile if compile is None else compile
        if compile_enabled(setting, step.device):
            if world_size > 1:
                LOGGER.warning("train.compile is not used by data-parallel runs (%d processes): "
                               "training in eager mode", world_size)
            else:
                step.enable_compile(backend=compile_backend, mode=compile_mode,
                                    required=setting in (True, "on"))
        return step

    def enable_compile(self, *, backend: str = "inductor", mode: str | None = None,
                       required: bool = False) -> bool:
        """Run the forward pass and loss sums of every task compiled (see
        :mod:`uniav.engine.capture`).  When compiling fails - here or in a task's first
        compiled step - ``required`` raises :class:`CompileError`; otherwise one warning is
        logged, the step trains eagerly and this returns False."""
        self.compile_required = required
        try:
            self.captured = CapturedLoss(self.model, autocast_dtype=self.autocast_dtype,
                                         mode=mode, backend=backend)
        except Exception as exc:  # noqa: BLE001 - any failure means: train eagerly
            self._compile_failed(exc)
            return False
        LOGGER.info("train.compile: forward and losses compiled per task (backend %s, mode %s)",
                    backend, self.captured.mode or "default")
        return True

    def _compile_failed(self, exc: BaseException) -> None:
        self.captured = None
        self.compile_fallback = describe(exc)
        if self.compile_required:
            raise CompileError(f"train.compile is on but compiling the training step failed "
                               f"({self.compile_fallback}); set train.compile: auto to fall "
                               f"back to eager mode, or off") from exc
        LOGGER.warning("train.compile: compiling the training step failed (%s); training "
                       "continues in eager mode", self.compile_fallback)

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
                  labels: list[torch.Tensor],
                  targets: tuple[torch.Tensor, torch.Tensor] | None = None) -> StepResult:
        """One optimizer step of one task on one batch (see module docs).

        Args:
            task: the task name.
            visual, audio: (B, C, T) padded features; mask: (B, T) bool.
            segments, labels: per video (N_i, 2) grid units and (N_i,) class indices.
            targets: the batch's ``(cls_targets, reg_targets)`` on the device, when the data
                pipeline computed them (:meth:`uniav.model.UniAV.targets`); otherwise they are
                computed here from ``segments`` and ``labels``.

        Returns:
            The :class:`StepResult`.
        """
        lr = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        if targets is None:
            targets = self.model.targets(visual.shape[-1], segments, labels, task, visual.device)
        scaled = self._forward_backward(task, visual, audio, mask, targets)
        grad_norm = None
        if self.clip_grad_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self._parameters, self.clip_grad_norm)
        self.optimizer.step()
        self.ema.update(self.model)
        names = list(scaled)
        values = torch.stack([scaled[name].detach().float() for name in names])  # (3,)
        if self.world_size > 1:
            values = sum_over_processes(values)   # this rank's share -> the global batch's loss
        if grad_norm is not None:
            values = torch.cat((values, grad_norm.detach().float().reshape(1).to(values.device)))
        numbers = values.tolist()                 # the step's one read-back to the host
        return StepResult(dict(zip(names, numbers[:3])),
                          numbers[3] if grad_norm is not None else math.nan, lr)

    def _forward_backward(self, task: str, visual: torch.Tensor, audio: torch.Tensor,
                          mask: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor]
                          ) -> dict[str, torch.Tensor]:
        """Forward, losses and backward of one task step; returns the scaled losses."""
        if self.captured is not None:
            if task in self._captured_ok:
                return self._backward(task, self.captured(task, visual, audio, mask, *targets))
            # the task's first compiled step compiles its graphs (forward, then backward): if
            # that fails, undo what the attempt changed and redo the step eagerly
            normalizer = self.model.loss_normalizers[task].clone()
            rng = rng_snapshot(self.device)
            try:
                scaled = self._backward(task, self.captured(task, visual, audio, mask, *targets))
            except Exception as exc:  # noqa: BLE001 - any failure means: train eagerly
                self.optimizer.zero_grad(set_to_none=True)
                self.model.loss_normalizers[task].copy_(normalizer)
                restore_rng(rng, self.device)
                self._compile_failed(exc)   # raises for train.compile: on
            else:
                self._captured_ok.add(task)
                return scaled
        with self._autocast():
            output = self.network(visual, audio, mask, task)
        return self._backward(task, self.model.loss_terms(output, *targets, task))

    def _backward(self, task: str, terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
        """Normalise the loss sums (updating the normaliser), scale, backward."""
        distributed = self.world_size > 1
        losses = self.model.normalized_losses(
            *terms, task, count_reducer=sum_over_processes if distributed else None)
        scale = self.loss_scale[task]
        scaled = {name: value * scale for name, value in losses.items()}
        (scaled["final_loss"] * self.world_size).backward()
        return scaled

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
