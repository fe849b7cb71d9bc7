"""Building blocks of the UniAV network (docs/architecture.md, "The network").

Every tensor here is channel-first: features ``(B, C, T)``, masks ``(B, 1, T)`` bool, True on
valid steps.  Layers that change the length return the new mask with their output.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


class MaskedConv1d(nn.Module):
    """1-D convolution whose output is zeroed on invalid steps.

    ``kernel_size`` is odd and the padding is ``kernel_size // 2``, so with stride ``s`` output
    step ``i`` is centred on input step ``i·s`` and the mask is down-sampled by nearest
    neighbour (``mask[..., ::s]``).

    Args:
        in_channels, out_channels, kernel_size, stride, groups, bias: as in :class:`nn.Conv1d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, C_in, T), mask (B, 1, T).  Returns: (B, C_out, T/stride), (B, 1, T/stride)."""
        if x.shape[-1] % self.stride:
            raise ValueError(f"length {x.shape[-1]} is not divisible by stride {self.stride}")
        out_mask = mask[..., ::self.stride] if self.stride > 1 else mask
        return self.conv(x) * out_mask.to(x.dtype), out_mask


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dimension of ``(B, C, T)`` tensors, affine per channel."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        variance = centred.square().mean(dim=1, keepdim=True)
        return centred * torch.rsqrt(variance + self.eps) * self.weight + self.bias


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """The absolute sinusoidal position table, shape (1, dim, num_positions), float32.

    Channel ``2i`` holds ``sin(pos / 10000^(2i/dim))`` and ``2i + 1`` the cosine, as in the
    original Transformer.
    """
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]       # (T, 1)
    channel_pairs = torch.div(torch.arange(dim), 2, rounding_mode="floor")       # (C,)
    angles = positions / torch.pow(10000.0, 2.0 * channel_pairs.double() / dim)  # (T, C)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float().T.unsqueeze(0)                                          # (1, C, T)


class Scale(nn.Module):
    """Multiplication by one learnable scalar (per pyramid level in the regression head)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(init_value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AffineDropPath(nn.Module):
    """Per-channel learnable scale (initialised small) followed by stochastic depth.

    Args:
        num_channels: channels of the ``(B, C, T)`` input.
        drop_prob: probability of dropping the whole residual branch of a sample in training.
        init_scale: initial value of the per-channel scale.
    """

    def __init__(self, num_channels: int, drop_prob: float, init_scale: float = 1e-4):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, num_channels, 1), init_scale))
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale * x
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x / keep_prob * torch.floor(keep + keep_prob)


class MaskedConvAttention(nn.Module):
    """Multi-head attention whose query, key and value inputs first go through a depthwise
    convolution and a LayerNorm (which can also down-sample), then 1x1 projections.

    Keys and values come from ``context`` (the residual stream X), queries from ``query``
    (the guide stream Y); with ``query is context`` it is self-attention.

    Args:
        dim: channels.
        num_heads: attention heads (``dim`` must be divisible by it).
        stride: 1, or the down-sampling factor (then the depthwise kernel is ``stride + 1``).
        dropout: dropout on the output projection.
    """

    def __init__(self, dim: int, num_heads: int, *, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if stride != 1 and stride % 2:
            raise ValueError(f"stride must be 1 or even, got {stride}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        kernel = stride + 1 if stride > 1 else 3
        self.query_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.query_norm = ChannelLayerNorm(dim)
        self.key_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.key_norm = ChannelLayerNorm(dim)
        self.value_conv = MaskedConv1d(dim, dim, kernel, stride=stride, groups=dim, bias=False)
        self.value_norm = ChannelLayerNorm(dim)
        self.query = nn.Conv1d(dim, dim, 1)
        self.key = nn.Conv1d(dim, dim, 1)
        self.value = nn.Conv1d(dim, dim, 1)
        self.proj = nn.Conv1d(dim, dim, 1)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, context: torch.Tensor, query: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: context, query (B, C, T); mask (B, 1, T).  Returns (B, C, T'), mask (B, 1, T')."""
        batch, channels, _ = context.shape
        q, query_mask = self.query_conv(query, mask)
        k, key_mask = self.key_conv(context, mask)
        v, _ = self.value_conv(context, mask)
        q = self.query(self.query_norm(q))
        k = self.key(self.key_norm(k))
        v = self.value(self.value_norm(v))
        # (B, heads * head_dim, T') -> (B, heads, T', head_dim)
        q = q.view(batch, self.num_heads, self.head_dim, -1).transpose(2, 3)
        k = k.view(batch, self.num_heads, self.head_dim, -1).transpose(2, 3)
        v = v.view(batch, self.num_heads, self.head_dim, -1).transpose(2, 3)
        # every query attends to the valid keys only: (B, 1, 1, T')
        attend = key_mask[:, :, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        # (B, heads, T', head_dim) -> (B, C, T')
        out = out.transpose(2, 3).reshape(batch, channels, -1)
        out = self.proj_drop(self.proj(out)) * query_mask.to(out.dtype)
        return out, query_mask


class FeedForward(nn.Module):
    """Pre-norm MLP ``C -> hidden -> C`` with GELU: one task expert (or the shared MLP)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.mlp = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.GELU(), nn.Dropout(dropout),
                                 nn.Conv1d(hidden, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(x))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: shared convolutional attention, then the current task's expert.

    ``forward(residual, guide, mask, task)``: keys/values from ``residual`` (X), queries from
    ``guide`` (Y).  The residual path is X itself, max-pooled (kernel 3, stride 2) when the
    block down-samples.  The feed-forward part is ``experts[task]`` when ``task_experts``,
    otherwise the single ``experts["shared"]`` (the naive multi-task baseline).

    Args:
        dim: channels.
        num_heads: attention heads.
        tasks: names of the tasks (one expert each when ``task_experts``).
        stride: 1 or 2 (down-sampling block).
        droppath: stochastic-depth probability (> 0 also adds the affine residual scales).
        dropout: dropout inside attention projection and MLP.
        task_experts: task-specific experts (True) or one shared MLP (False).
    """

    SHARED_EXPERT = "shared"

    def __init__(self, dim: int, num_heads: int, tasks: list[str], *, stride: int = 1,
                 droppath: float = 0.0, dropout: float = 0.0, task_experts: bool = True):
        super().__init__()
        self.task_experts = task_experts
        self.ln11 = ChannelLayerNorm(dim)   # normalises the residual / key-value stream
        self.ln12 = ChannelLayerNorm(dim)   # normalises the guide / query stream
        self.attn = MaskedConvAttention(dim, num_heads, stride=stride, dropout=dropout)
        self.pool_skip = (nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2)
                          if stride > 1 else nn.Identity())
        expert_names = list(tasks) if task_experts else [self.SHARED_EXPERT]
        self.experts = nn.ModuleDict({name: FeedForward(dim, 4 * dim, dropout)
                                      for name in expert_names})
        if droppath > 0:
            self.drop_path_attn = AffineDropPath(dim, droppath)
            self.drop_path_mlp = AffineDropPath(dim, droppath)
        else:
            self.drop_path_attn = nn.Identity()
            self.drop_path_mlp = nn.Identity()

    def expert_key(self, task: str) -> str:
        """Name of the expert that serves ``task``."""
        return task if self.task_experts else self.SHARED_EXPERT

    def forward(self, residual: torch.Tensor, guide: torch.Tensor, mask: torch.Tensor, task: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: residual, guide (B, C, T); mask (B, 1, T).  Returns (B, C, T'), (B, 1, T')."""
        attended, out_mask = self.attn(self.ln11(residual), self.ln12(guide), mask)
        valid = out_mask.to(attended.dtype)
        out = self.pool_skip(residual) * valid + self.drop_path_attn(attended)
        out = out + self.drop_path_mlp(self.experts[self.expert_key(task)](out) * valid)
        return out, out_mask
