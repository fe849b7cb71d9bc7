"""Classification and regression heads, shared across pyramid levels (docs/architecture.md, "The network")."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from uniav.model.layers import ChannelLayerNorm, MaskedConv1d, Scale


class _ConvTower(nn.Module):
    """``num_layers`` masked convolutions, each with a channel LayerNorm (optional) and ReLU."""

    def __init__(self, in_dim: int, dim: int, num_layers: int, kernel_size: int, with_ln: bool):
        super().__init__()
        self.head = nn.ModuleList()
        self.norm = nn.ModuleList()
        for i in range(num_layers):
            self.head.append(MaskedConv1d(in_dim if i == 0 else dim, dim, kernel_size,
                                          bias=not with_ln))
            self.norm.append(ChannelLayerNorm(dim) if with_ln else nn.Identity())

    def tower(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: features (B, C_in, T), mask (B, 1, T).  Returns (B, dim, T)."""
        for conv, norm in zip(self.head, self.norm):
            features, _ = conv(features, mask)
            features = F.relu(norm(features))
        return features


class PromptBank(nn.Module):
    """Per-task text embeddings of the class prompts, kept as (persistent) buffers.

    ``bank[task]`` is the (K, D) tensor of that task; they travel with the model's state_dict.
    """

    def __init__(self, tasks: dict[str, int], text_dim: int):
        super().__init__()
        self.text_dim = text_dim
        for task, num_classes in tasks.items():
            self.register_buffer(task, torch.zeros(num_classes, text_dim))

    def __getitem__(self, task: str) -> torch.Tensor:
        return getattr(self, task)

    def set(self, task: str, embeddings: torch.Tensor, *, resize: bool = False) -> None:
        """Replace the embeddings of ``task``; the shape must stay (K, D), or with ``resize``
        only D (another vocabulary at inference: K' rows)."""
        current = self[task]
        if resize:
            if embeddings.ndim != 2 or embeddings.shape[1] != current.shape[1] \
                    or embeddings.shape[0] < 1:
                raise ValueError(f"task {task!r}: prompt embeddings of shape "
                                 f"{tuple(embeddings.shape)}, expected (K, {current.shape[1]})")
            setattr(self, task, embeddings.detach().to(current.device, current.dtype).clone())
            return
        if tuple(embeddings.shape) != tuple(current.shape):
            raise ValueError(f"task {task!r}: prompt embeddings of shape "
                             f"{tuple(embeddings.shape)}, expected {tuple(current.shape)} "
                             f"(one row per class)")
        current.copy_(embeddings.to(current.dtype))


class ClassificationHead(_ConvTower):
    """Scores each point of each level against each class of the current task.

    ``classifier="prompt"`` (UniAV): a masked conv projection of the head features and a linear
    projection of the task's prompt embeddings, both L2-normalised; logits are
    ``exp(s) * cosine`` with a learnable temperature ``s`` initialised to log(1/0.07).
    ``classifier="linear"`` (ablation): a per-task masked conv to K logits, bias initialised
    to the prior ``cls_prior_prob``.

    Args:
        in_dim: input channels (2C: visual and audio concatenated).
        dim: head channels.
        tasks: task name -> number of classes.
        num_layers: convolutions before the projection (``head_num_layers - 1``).
        kernel_size, with_ln: tower settings.
        classifier: ``"prompt"`` or ``"linear"``.
        text_dim: width of the prompt embeddings.
        prior_prob: initial foreground probability of the linear classifier.
    """

    def __init__(self, in_dim: int, dim: int, tasks: dict[str, int], *, num_layers: int,
                 kernel_size: int, with_ln: bool, classifier: Literal["prompt", "linear"],
                 text_dim: int, prior_prob: float = 0.01):
        super().__init__(in_dim, dim, num_layers, kernel_size, with_ln)
        self.classifier = classifier
        if classifier == "prompt":
            self.prompts = PromptBank(tasks, text_dim)
            self.text_proj = nn.Linear(text_dim, dim)
            nn.init.xavier_uniform_(self.text_proj.weight)
            nn.init.zeros_(self.text_proj.bias)
            self.visual_proj = MaskedConv1d(dim, dim, kernel_size)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        elif classifier == "linear":
            self.classifiers = nn.ModuleDict({task: MaskedConv1d(dim, k, kernel_size)
                                              for task, k in tasks.items()})
            prior_bias = -math.log((1 - prior_prob) / prior_prob)
            for head in self.classifiers.values():
                nn.init.constant_(head.conv.bias, prior_bias)
        else:
            raise ValueError(f"unknown classifier {classifier!r}")

    def forward(self, levels: list[torch.Tensor], masks: list[torch.Tensor], task: str
                ) -> list[torch.Tensor]:
        """Args: levels [(B, in_dim, T_l)], masks [(B, 1, T_l)].  Returns [(B, T_l, K)]."""
        if self.classifier == "prompt":
            class_embeddings = F.normalize(self.text_proj(self.prompts[task]), dim=1)  # (K, dim)
            scale = self.logit_scale.exp()
        logits = []
        for features, mask in zip(levels, masks):
            features = self.tower(features, mask)
            if self.classifier == "prompt":
                features, _ = self.visual_proj(features, mask)
                features = F.normalize(features, dim=1)
                # (B, dim, T) -> (B, T, dim) @ (dim, K) -> (B, T, K)
                level_logits = scale * features.transpose(1, 2) @ class_embeddings.T
            else:
                level_logits, _ = self.classifiers[task](features, mask)
                level_logits = level_logits.transpose(1, 2)              # (B, K, T) -> (B, T, K)
            logits.append(level_logits * mask.transpose(1, 2).to(level_logits.dtype))
        return logits


class RegressionHead(_ConvTower):
    """Distances from each point to the start and end of its instance, in units of the level's
    stride: ``relu(scale_l * conv(features))``.

    The output conv is per task: 2 channels, or 2 per class when the task is class-aware
    (channels class-major: ``[c0_left, c0_right, c1_left, ...]``).

    Args:
        in_dim, dim, num_layers, kernel_size, with_ln: as :class:`ClassificationHead`.
        tasks: task name -> (number of classes, class-aware?).
        num_levels: pyramid levels (one learnable scale each).
    """

    def __init__(self, in_dim: int, dim: int, tasks: dict[str, tuple[int, bool]], *,
                 num_layers: int, kernel_size: int, with_ln: bool, num_levels: int):
        super().__init__(in_dim, dim, num_layers, kernel_size, with_ln)
        self.class_aware = {task: aware for task, (_, aware) in tasks.items()}
        self.num_classes = {task: k for task, (k, _) in tasks.items()}
        self.scale = nn.ModuleList(Scale() for _ in range(num_levels))
        self.offset_heads = nn.ModuleDict({
            task: MaskedConv1d(dim, 2 * k if aware else 2, kernel_size)
            for task, (k, aware) in tasks.items()})

    def forward(self, levels: list[torch.Tensor], masks: list[torch.Tensor], task: str
                ) -> list[torch.Tensor]:
        """Args: levels [(B, in_dim, T_l)], masks [(B, 1, T_l)].

        Returns:
            per level (B, T_l, 2), or (B, T_l, K, 2) for a class-aware task.
        """
        offsets = []
        for level, (features, mask) in enumerate(zip(levels, masks)):
            features = self.tower(features, mask)
            level_offsets, _ = self.offset_heads[task](features, mask)
            level_offsets = F.relu(self.scale[level](level_offsets)).transpose(1, 2)  # (B, T, 2|2K)
            if self.class_aware[task]:
                batch, steps, _ = level_offsets.shape
                level_offsets = level_offsets.reshape(batch, steps, self.num_classes[task], 2)
            offsets.append(level_offsets)
        return offsets
