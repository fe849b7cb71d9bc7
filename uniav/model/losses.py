"""Losses (docs/architecture.md, "The network"): sigmoid focal loss and the centre-DIoU 1-D regression loss.

Both return per-element values with ``reduction="none"`` so that the training loss can sum them
under a mask (fixed shapes, no boolean indexing: see :meth:`uniav.model.UniAV.loss_terms`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["sum", "none"]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25,
                       gamma: float = 2.0, reduction: Reduction = "sum") -> torch.Tensor:
    """Sigmoid focal loss (RetinaNet), summed over all elements or per element.

    Args:
        logits: any shape.
        targets: same shape, in [0, 1] (soft targets allowed: label smoothing).
        alpha: weight of the positive term (negative: no weighting).
        gamma: focusing exponent.
        reduction: ``"sum"`` (a scalar) or ``"none"`` (the shape of ``logits``).

    Returns:
        A float32 tensor.
    """
    logits = logits.float()
    targets = targets.float()
    probs = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum() if reduction == "sum" else loss


def centre_diou_loss(predicted: torch.Tensor, target: torch.Tensor, eps: float = 1e-8,
                     reduction: Reduction = "sum") -> torch.Tensor:
    """Distance-IoU loss for 1-D segments given as (left, right) distances from a shared
    centre point: ``1 - IoU + (centre distance / enclosing length)^2``.

    Args:
        predicted: (..., 2) non-negative distances.
        target: (..., 2) non-negative distances.
        eps: lower bound of the union and the enclosing length.
        reduction: ``"sum"`` (a scalar; 0 when there are no segments) or ``"none"`` (shape
            ``(...)``).  Where both segments are empty (all distances 0) the loss is 1 and its
            gradient is finite, so masked-out points can take part in a masked sum.

    Returns:
        A float32 tensor.
    """
    predicted = predicted.float()
    target = target.float()
    pred_left, pred_right = predicted.unbind(-1)
    target_left, target_right = target.unbind(-1)
    intersection = torch.minimum(pred_left, target_left) + torch.minimum(pred_right, target_right)
    union = pred_left + pred_right + target_left + target_right - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.maximum(pred_left, target_left) + torch.maximum(pred_right, target_right)
    centre_offset = 0.5 * (pred_right - pred_left - target_right + target_left)
    loss = 1.0 - iou + (centre_offset / enclosing.clamp(min=eps)).square()
    return loss.sum() if reduction == "sum" else loss
