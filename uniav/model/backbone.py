"""The two-stream audio-visual backbone with cross-modal fusion and a 6-level pyramid."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from uniav.model.layers import ChannelLayerNorm, MaskedConv1d, TransformerBlock, sinusoid_position_table

#: How the position table is stretched at inference (see :class:`AudioVisualBackbone`).
PositionInterpolation = Literal["beyond_table", "released"]


class AudioVisualBackbone(nn.Module):
    """Embedding, stem, full-resolution fusion and pyramid, for both modalities.

    1. Embedding per modality: ``arch[0]`` masked convolutions, each followed by a channel
       LayerNorm (if ``with_ln``) and ReLU; then the sinusoidal position table scaled by 1/sqrt(C).
    2. Stem per modality: ``arch[1] - 1`` self-attention blocks.
    3. Fusion at full resolution: ``V0 = Block(X=V, Y=A)``, ``A0 = Block(X=A, Y=V)``.
    4. Pyramid: ``arch[2]`` levels, each halving T: ``V_{l+1} = Block_down(X=V_l, Y=A_l)`` and
       ``A_{l+1} = Block_down(X=A_l, Y=V_l)``.

    (``arch[1]`` counts the fusion block as part of the stem, as the released code does: the
    paper preset ``arch = (2, 3, 5)`` has 2 self-attention blocks per modality.)

    Position table at inference: it has ``max(max_seq_len)`` positions over the tasks.  With
    ``position_interpolation="beyond_table"`` (default) it is sliced for sequences that fit and
    linearly stretched only for longer ones, exactly as in training.  ``"released"`` reproduces
    the released implementation, which stretches the whole table to T whenever T reaches the
    *task's* ``max_seq_len`` - for a task whose ``max_seq_len`` is shorter than the table's
    (SED beside TAL/AVEL) the positions seen at inference then differ from those seen in
    training.  Imported released checkpoints use ``"released"`` so they reproduce its outputs.

    Args:
        visual_dim, audio_dim: input feature channels.
        dim: embedding channels C.
        num_heads: attention heads.
        tasks: task name -> its ``max_seq_len``.
        arch: (embedding convs, stem blocks incl. fusion, pyramid levels).
        kernel_size: embedding convolution kernel.
        with_ln: LayerNorm after the embedding convolutions.
        use_abs_pe: add the absolute position table.
        droppath, dropout, task_experts: forwarded to the blocks.
        position_interpolation: see above.
    """

    def __init__(self, visual_dim: int, audio_dim: int, dim: int, num_heads: int,
                 tasks: dict[str, int], *, arch: tuple[int, int, int] = (2, 3, 5),
                 scale_factor: int = 2, kernel_size: int = 3, with_ln: bool = True,
                 use_abs_pe: bool = True, droppath: float = 0.0, dropout: float = 0.0,
                 task_experts: bool = True,
                 position_interpolation: PositionInterpolation = "beyond_table"):
        super().__init__()
        num_convs, num_stem, num_levels = arch
        task_names = list(tasks)
        self.max_seq_len = dict(tasks)
        self.use_abs_pe = use_abs_pe
        self.position_interpolation = position_interpolation
        self.level_strides = [scale_factor ** level for level in range(num_levels + 1)]
        if use_abs_pe:
            table = sinusoid_position_table(max(tasks.values()), dim) / dim ** 0.5
            self.register_buffer("position_table", table, persistent=False)

        def embedding(in_dim: int) -> tuple[nn.ModuleList, nn.ModuleList]:
            convs, norms = nn.ModuleList(), nn.ModuleList()
            for i in range(num_convs):
                convs.append(MaskedConv1d(in_dim if i == 0 else dim, dim, kernel_size,
                                          bias=not with_ln))
                norms.append(ChannelLayerNorm(dim) if with_ln else nn.Identity())
            return convs, norms

        def block(stride: int) -> TransformerBlock:
            return TransformerBlock(dim, num_heads, task_names, stride=stride, droppath=droppath,
                                    dropout=dropout, task_experts=task_experts)

        self.visual_embed, self.visual_embed_norms = embedding(visual_dim)
        self.audio_embed, self.audio_embed_norms = embedding(audio_dim)
        self.visual_stem = nn.ModuleList(block(1) for _ in range(num_stem - 1))
        self.audio_stem = nn.ModuleList(block(1) for _ in range(num_stem - 1))
        self.visual_fusion = block(1)
        self.audio_fusion = block(1)
        self.visual_pyramid = nn.ModuleList(block(scale_factor) for _ in range(num_levels))
        self.audio_pyramid = nn.ModuleList(block(scale_factor) for _ in range(num_levels))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _positions(self, length: int, task: str) -> torch.Tensor:
        """Position table for ``length`` steps, (1, C, length)."""
        table = self.position_table
        if self.training:
            if length > table.shape[-1]:
                raise ValueError(f"task {task!r}: training sequence of {length} steps exceeds "
                                 f"the position table ({table.shape[-1]})")
            return table[:, :, :length]
        if self.position_interpolation == "released":
            stretch = length >= self.max_seq_len[task]
        else:
            stretch = length > table.shape[-1]
        if stretch:
            return F.interpolate(table, length, mode="linear", align_corners=False)
        return table[:, :, :length]

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor, task: str
                ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Args: visual (B, Cv, T), audio (B, Ca, T), mask (B, 1, T) bool, task name.

        Returns:
            visual pyramid, audio pyramid (each ``len(level_strides)`` tensors (B, C, T_l)) and
            the pyramid masks ((B, 1, T_l) each).
        """
        visual_mask = audio_mask = mask
        for conv, norm in zip(self.visual_embed, self.visual_embed_norms):
            visual, visual_mask = conv(visual, visual_mask)
            visual = F.relu(norm(visual))
        for conv, norm in zip(self.audio_embed, self.audio_embed_norms):
            audio, audio_mask = conv(audio, audio_mask)
            audio = F.relu(norm(audio))
        if self.use_abs_pe:
            positions = self._positions(visual.shape[-1], task)
            visual = visual + positions * visual_mask.to(visual.dtype)
            audio = audio + positions * audio_mask.to(audio.dtype)
        for visual_block, audio_block in zip(self.visual_stem, self.audio_stem):
            visual, visual_mask = visual_block(visual, visual, visual_mask, task)
            audio, audio_mask = audio_block(audio, audio, audio_mask, task)
        visual_levels, _ = self.visual_fusion(visual, audio, visual_mask, task)
        audio_levels, level_mask = self.audio_fusion(audio, visual, audio_mask, task)
        visual_levels, audio_levels, masks = [visual_levels], [audio_levels], [level_mask]
        for visual_block, audio_block in zip(self.visual_pyramid, self.audio_pyramid):
            visual_next, next_mask = visual_block(visual_levels[-1], audio_levels[-1], masks[-1], task)
            audio_next, _ = audio_block(audio_levels[-1], visual_levels[-1], masks[-1], task)
            visual_levels.append(visual_next)
            audio_levels.append(audio_next)
            masks.append(next_mask)
        return visual_levels, audio_levels, masks
