"""The UniAV network: backbone + heads, returning raw outputs; and its training losses.

The model knows nothing about seconds, NMS or metrics: :meth:`UniAV.forward` returns per-level
logits and offsets (decoded by :mod:`uniav.postprocess`), :meth:`UniAV.loss` assigns targets and
computes the losses.  Everything it needs at run time - prompt embeddings, loss normalisers -
lives in its ``state_dict``; :class:`ModelSpec` (plain data) is enough to rebuild it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from uniav.config import ModelConfig, parse
from uniav.model.backbone import AudioVisualBackbone
from uniav.model.heads import ClassificationHead, RegressionHead
from uniav.model.losses import centre_diou_loss, sigmoid_focal_loss
from uniav.model.targets import PyramidPoints, assign_targets, pad_instances, pyramid_points


@dataclass(frozen=True)
class TaskHeadConfig:
    """What the network needs to know about one task."""

    num_classes: int
    max_seq_len: int
    class_aware: bool
    label_smoothing: float
    init_loss_norm: float


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a :class:`UniAV` (stored in checkpoints as plain data)."""

    model: ModelConfig
    tasks: dict[str, TaskHeadConfig]
    visual_dim: int
    audio_dim: int
    text_dim: int

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-compatible data."""
        data = asdict(self)
        data["model"]["arch"] = list(data["model"]["arch"])
        data["model"]["regression_ranges"] = [list(r) for r in data["model"]["regression_ranges"]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict` (validated)."""
        data = dict(data)
        if "position_interpolation" in data:  # written by older versions beside the model
            data["model"] = {**data["model"],
                             "position_interpolation": data.pop("position_interpolation")}
        return parse(cls, data, "model_spec")


@dataclass
class ModelOutput:
    """Raw outputs for one task, one entry per pyramid level.

    Attributes:
        cls_logits: (B, T_l, K) per level.
        offsets: (B, T_l, 2), or (B, T_l, K, 2) for class-aware tasks; distances in units of
            the level's stride.
        masks: (B, T_l) bool per level.
        level_strides: stride of each level (grid steps per point).
        visual_features, audio_features: (B, C, T_l) backbone outputs per level.
    """

    cls_logits: list[torch.Tensor]
    offsets: list[torch.Tensor]
    masks: list[torch.Tensor]
    level_strides: list[int]
    visual_features: list[torch.Tensor] = field(default_factory=list)
    audio_features: list[torch.Tensor] = field(default_factory=list)


class TaskScalars(nn.Module):
    """One persistent float buffer per task (the loss normalisers)."""

    def __init__(self, values: dict[str, float]):
        super().__init__()
        for task, value in values.items():
            self.register_buffer(task, torch.tensor(float(value), dtype=torch.float64))

    def __getitem__(self, task: str) -> torch.Tensor:
        return getattr(self, task)


class UniAV(nn.Module):
    """The multi-task audio-visual localisation network (docs/architecture.md, "The network").

    Args:
        spec: architecture, tasks and input widths.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        cfg = spec.model
        self.task_names = list(spec.tasks)
        self.backbone = AudioVisualBackbone(
            spec.visual_dim, spec.audio_dim, cfg.embd_dim, cfg.n_head,
            {t: h.max_seq_len for t, h in spec.tasks.items()}, arch=tuple(cfg.arch),
            scale_factor=cfg.scale_factor, kernel_size=cfg.embd_kernel_size,
            with_ln=cfg.embd_with_ln, use_abs_pe=cfg.use_abs_pe, droppath=cfg.droppath,
            dropout=cfg.dropout, task_experts=cfg.task_experts,
            position_interpolation=cfg.position_interpolation)
        self.level_strides = self.backbone.level_strides
        if len(cfg.regression_ranges) != len(self.level_strides):
            raise ValueError(f"{len(cfg.regression_ranges)} regression ranges for "
                             f"{len(self.level_strides)} pyramid levels")
        for task, head in spec.tasks.items():
            if head.max_seq_len % self.level_strides[-1]:
                raise ValueError(f"task {task!r}: max_seq_len {head.max_seq_len} is not divisible "
                                 f"by the largest stride {self.level_strides[-1]}")
        self.cls_head = ClassificationHead(
            2 * cfg.embd_dim, cfg.head_dim, {t: h.num_classes for t, h in spec.tasks.items()},
            num_layers=cfg.head_num_layers - 1, kernel_size=cfg.head_kernel_size,
            with_ln=cfg.head_with_ln, classifier=cfg.classifier, text_dim=spec.text_dim,
            prior_prob=cfg.cls_prior_prob)
        self.reg_head = RegressionHead(
            2 * cfg.embd_dim, cfg.head_dim,
            {t: (h.num_classes, h.class_aware) for t, h in spec.tasks.items()},
            num_layers=cfg.head_num_layers - 1, kernel_size=cfg.head_kernel_size,
            with_ln=cfg.head_with_ln, num_levels=len(self.level_strides))
        self.loss_normalizers = TaskScalars({t: h.init_loss_norm for t, h in spec.tasks.items()})
        self._points_cache: dict[tuple[int, str], PyramidPoints] = {}

    # ---- prompts ---------------------------------------------------------------------------

    def set_text_embeddings(self, task: str, embeddings: torch.Tensor, *,
                            resize: bool = False) -> None:
        """Install the (K, D) prompt embeddings of ``task`` (prompt classifier only).

        ``resize`` allows another number of rows than the task was built with: inference over
        another vocabulary (:mod:`uniav.engine.vocabulary`).  The logits then have one column
        per new row; the offsets of a class-aware task still have the trained classes'
        channels (the vocabulary maps each new class onto one of them)."""
        if self.spec.model.classifier != "prompt":
            return
        self.cls_head.prompts.set(task, embeddings, resize=resize)

    # ---- forward ---------------------------------------------------------------------------

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor, task: str
                ) -> ModelOutput:
        """Run the network on one task's batch.

        Args:
            visual: (B, Cv, T) features, zero-padded; T divisible by the largest stride.
            audio: (B, Ca, T).
            mask: (B, T) bool, True on valid steps.
            task: task name.

        Returns:
            :class:`ModelOutput` (raw logits and offsets per level).
        """
        if task not in self.spec.tasks:
            raise KeyError(f"model has no task {task!r} (tasks: {', '.join(self.task_names)})")
        visual_levels, audio_levels, masks = self.backbone(visual, audio, mask[:, None, :], task)
        # (B, C, T_l) visual and audio -> (B, 2C, T_l)
        joint = [torch.cat((v, a), dim=1) for v, a in zip(visual_levels, audio_levels)]
        cls_logits = self.cls_head(joint, masks, task)
        offsets = self.reg_head(joint, masks, task)
        return ModelOutput(cls_logits=cls_logits, offsets=offsets,
                           masks=[m[:, 0, :] for m in masks], level_strides=list(self.level_strides),
                           visual_features=visual_levels, audio_features=audio_levels)

    # ---- targets and losses ----------------------------------------------------------------

    def points(self, length: int, device: torch.device) -> PyramidPoints:
        """Pyramid points for a padded length (cached)."""
        key = (length, str(device))
        if key not in self._points_cache:
            self._points_cache[key] = pyramid_points(length, self.level_strides,
                                                     list(self.spec.model.regression_ranges), device)
        return self._points_cache[key]

    def targets(self, length: int, segments: list[torch.Tensor], labels: list[torch.Tensor],
                task: str, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Classification (B, P, K) and regression (B, P, 2 | K, 2) targets of a batch."""
        head = self.spec.tasks[task]
        padded_segments, padded_labels, valid = pad_instances(segments, labels, device)
        return assign_targets(self.points(length, torch.device(device)), padded_segments,
                              padded_labels, valid, head.num_classes, head.class_aware)

    def loss(self, output: ModelOutput, segments: list[torch.Tensor], labels: list[torch.Tensor],
             task: str, *, count_reducer: Callable[[torch.Tensor], torch.Tensor] | None = None,
             targets: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> dict[str, torch.Tensor]:
        """Training losses of one batch; updates the task's loss normaliser (moving average of
        the number of positive points, momentum from the config) when the model is training.

        :meth:`loss_terms` (fixed shapes, no host synchronisation) then
        :meth:`normalized_losses`.

        Args:
            output: the forward output.
            segments: per video (N_i, 2) instances in grid units.
            labels: per video (N_i,) class indices.
            task: task name.
            count_reducer: under data parallelism, sums a count over the processes, so the
                normaliser counts the positive points of the global batch (the caller then
                scales the loss by the number of processes, which the gradient averaging
                divides back out); None for one process.
            targets: ``(cls_targets, reg_targets)`` of :meth:`targets` when the caller has
                them already (``segments`` and ``labels`` are then not read).

        Returns:
            ``{"cls_loss", "reg_loss", "final_loss"}`` scalars.
        """
        device = output.cls_logits[0].device
        if targets is None:
            targets = self.targets(output.masks[0].shape[1], segments, labels, task, device)
        cls_sum, reg_sum, num_positive = self.loss_terms(output, *targets, task)
        return self.normalized_losses(cls_sum, reg_sum, num_positive, task,
                                      count_reducer=count_reducer)

    def loss_terms(self, output: ModelOutput, cls_targets: torch.Tensor, reg_targets: torch.Tensor,
                   task: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The un-normalised losses of a batch: masked sums over every point of every level.

        Every shape here is fixed by the batch's (B, T) and the task - no boolean indexing, no
        ``.item()`` - so the computation can be captured (``torch.compile``, CUDA graphs).  The
        math is the released loss: the focal loss summed over the valid points, the centre-DIoU
        loss summed over the positive points (for class-aware tasks: over the positive points'
        classes with a target), each a masked sum instead of a sum over gathered rows.

        Args:
            output: the forward output.
            cls_targets: (B, P, K) from :meth:`targets`.
            reg_targets: (B, P, 2), or (B, P, K, 2) for class-aware tasks.
            task: task name.

        Returns:
            ``(focal loss sum, DIoU loss sum, number of positive points)``: float32, float32
            and int64 scalars.
        """
        cfg = self.spec.model
        head = self.spec.tasks[task]
        valid = torch.cat(output.masks, dim=1)                                # (B, P)
        positive = (cls_targets.sum(-1) > 0) & valid                          # (B, P)
        logits = torch.cat(output.cls_logits, dim=1)                          # (B, P, K)
        smoothing = head.label_smoothing
        soft_targets = cls_targets * (1 - smoothing) + smoothing / (head.num_classes + 1)
        focal = sigmoid_focal_loss(logits, soft_targets, alpha=cfg.focal_alpha,
                                   gamma=cfg.focal_gamma, reduction="none")   # (B, P, K)
        cls_sum = torch.where(valid[..., None], focal, 0.0).sum()
        predicted = torch.cat(output.offsets, dim=1)                          # (B, P, [K,] 2)
        if head.class_aware:
            # the classes of a positive point that have a regression target: (B, P, K)
            regressed = positive[..., None] & (reg_targets > 0).any(-1)
        else:
            regressed = positive
        diou = centre_diou_loss(predicted, reg_targets, reduction="none")    # (B, P[, K])
        reg_sum = torch.where(regressed, diou, 0.0).sum()
        return cls_sum, reg_sum, positive.sum()

    def normalized_losses(self, cls_sum: torch.Tensor, reg_sum: torch.Tensor,
                          num_positive: torch.Tensor, task: str, *,
                          count_reducer: Callable[[torch.Tensor], torch.Tensor] | None = None
                          ) -> dict[str, torch.Tensor]:
        """Divide the sums of :meth:`loss_terms` by the task's loss normaliser, updated first
        (when training) towards ``max(positive points, 1)`` - tensor arithmetic in float64,
        the released update to the last bit, without a host synchronisation.

        Args:
            cls_sum, reg_sum, num_positive: from :meth:`loss_terms`.
            task: task name.
            count_reducer: see :meth:`loss`.

        Returns:
            ``{"cls_loss", "reg_loss", "final_loss"}`` scalars.
        """
        cfg = self.spec.model
        normalizer = self.loss_normalizers[task]
        if self.training:
            momentum = cfg.loss_norm_momentum
            count = num_positive if count_reducer is None else count_reducer(num_positive)
            count = count.to(normalizer.dtype).clamp(min=1)
            normalizer.mul_(momentum).add_(count * (1 - momentum))
        scale = normalizer.float()
        cls_loss = cls_sum / scale
        reg_loss = reg_sum / scale
        return {"cls_loss": cls_loss, "reg_loss": reg_loss,
                "final_loss": cls_loss + cfg.reg_loss_weight * reg_loss}


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts: total, task experts, and the rest."""
    total = sum(p.numel() for p in model.parameters())
    experts = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    return {"parameters": total, "expert_parameters": experts, "shared_parameters": total - experts}
