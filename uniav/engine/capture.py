"""The captured training step: each task's forward and loss terms through ``torch.compile``.

``train.compile`` (``off`` | ``auto`` | ``on``; ``auto`` = on for CUDA, off on the CPU; in YAML
``off``/``on`` are the booleans false/true) decides
whether :class:`~uniav.engine.stepper.TrainingStep` runs a task's forward pass and its
un-normalised losses (:meth:`uniav.model.UniAV.loss_terms`) as one compiled graph per task.
Everything in that region has a fixed shape per task - the batch is padded to the task's
``max_seq_len``, the targets are dense ``(B, P, K)`` tensors computed beforehand, the losses are
masked sums - and nothing in it reads a value back to the host, so on CUDA the graph is recorded
once as a CUDA graph (``mode="reduce-overhead"``) and replayed at every step of the task: one
launch instead of thousands.  The backward pass of the region is compiled with it.

Outside the region, in eager mode: the loss normaliser update and the division by it (a
buffer mutation and, under data parallelism, an all-reduce - kept out so that the compiled graph
is a pure function), gradient clipping, the fused AdamW step and the EMA (a few multi-tensor
kernels each).

bf16 autocast is traced into the graph: the casts of the weights to bf16 become part of the
compiled region - no launches of their own under a CUDA graph, only their memory traffic (the
weights are read once in fp32 and written once in bf16 per step).  Master weights, gradients
and optimizer state stay fp32.  (Keeping bf16 copies refreshed "once per optimizer step" would
cast exactly as often: the released loop steps the optimizer after every task step.)

Fallback: if compiling fails - no C++ compiler or Triton, an unsupported operation, anything
raised while the first compiled step of a task runs (its forward and backward) - the state that
step touched is restored (loss normaliser, random number generators, gradients); with ``auto``
one warning names the reason and the run continues in eager mode, with ``on`` the run stops
with :class:`~uniav.engine.stepper.CompileError`.  After a task's first compiled step
succeeded, errors propagate as in eager mode.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Literal, Union

import torch

from uniav.model import UniAV

LOGGER = logging.getLogger(__name__)

#: ``train.compile``: False (``off``), True (``on``) or ``"auto"`` (on CUDA only).
CompileSetting = Union[bool, Literal["auto", "off", "on"]]


def compile_enabled(setting: CompileSetting, device: torch.device) -> bool:
    """Whether ``train.compile`` asks for the captured step on ``device``."""
    if setting in (True, "on"):
        return True
    if setting in (False, "off"):
        return False
    if setting == "auto":
        return device.type == "cuda"
    raise ValueError(f"train.compile must be off, auto or on, got {setting!r}")


def default_mode(device: torch.device) -> str | None:
    """The ``torch.compile`` mode: CUDA graphs on CUDA, inductor's default elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else None


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (compiler errors can run to pages)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class CapturedLoss:
    """Per-task compiled ``forward + loss_terms`` of a model (see module docs).

    Args:
        model: the (unwrapped) model.
        autocast_dtype: bf16 autocast inside the captured region, or None.
        mode: ``torch.compile`` mode (default: :func:`default_mode` of the model's device).
        backend: ``torch.compile`` backend (default ``inductor``; tests use ``aot_eager``).

    Raises:
        Exception: whatever ``torch.compile`` raises when wrapping (the caller falls back).
    """

    def __init__(self, model: UniAV, *, autocast_dtype: torch.dtype | None = None,
                 mode: str | None = None, backend: str | Callable[..., Any] = "inductor"):
        self.model = model
        self.autocast_dtype = autocast_dtype
        self.device = next(model.parameters()).device
        self.mode = mode if mode is not None else default_mode(self.device)
        self.backend = backend
        self.cuda_graphs = self.mode == "reduce-overhead" and self.device.type == "cuda"
        self._compiled = {task: self._compile(task) for task in model.task_names}

    def _compile(self, task: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        model = self.model
        device_type = self.device.type
        dtype = self.autocast_dtype

        def forward_loss_terms(visual: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                               cls_targets: torch.Tensor, reg_targets: torch.Tensor):
            with torch.autocast(device_type, dtype=dtype or torch.bfloat16,
                                enabled=dtype is not None):
                output = model(visual, audio, mask, task)
            return model.loss_terms(output, cls_targets, reg_targets, task)

        options = {"dynamic": False, "backend": self.backend}
        if self.mode is not None:
            options["mode"] = self.mode
        return torch.compile(forward_loss_terms, **options)

    def __call__(self, task: str, visual: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                 cls_targets: torch.Tensor, reg_targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(focal sum, DIoU sum, positive count)`` of one batch (see
        :meth:`~uniav.model.UniAV.loss_terms`)."""
        if self.cuda_graphs:
            # a new step: outputs of the previous replay may be overwritten (their values - the
            # gradients - have been consumed by the optimizer step)
            torch.compiler.cudagraph_mark_step_begin()
        return self._compiled[task](visual, audio, mask, cls_targets, reg_targets)


def rng_snapshot(device: torch.device) -> dict[str, Any]:
    """The random number generators a step draws from (restored when it is redone)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Undo the draws made since :func:`rng_snapshot`."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
