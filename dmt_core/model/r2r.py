"""Region-to-region correlation, R2R (the official ``GroupAttention``).

Every pixel of every image in the group attends to *regions* of all images of the
group (its own included): the keys/values are adaptive average pools of each image at
1x1, 3x3 and 6x6 (46 regions per image), so the cost is O(N*h*w * 46*N) instead of the
O((N*h*w)^2) of pixel-to-pixel attention. Maps taller than ``query_side`` (16) are
max-pooled to 16 rows for the queries and the update is upsampled back (nearest).

    F (N, C, h, w)
    q = maxpool?(F) -> (1, N*hq*wq, C);  kv = avgpools(F) -> (1, N*46, C)
    F = F + DropPath_image(up(Attn(q, kv)))
    F = F + DropPath_group(FFN(F))          # FFN hidden width = C, at full resolution

No positional encoding; LayerNorms on q, k and v separately; no final norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import stochastic_depth

from .layers import Linear, NormedQKV, trunc_normal_init


class RegionAttention(NormedQKV):
    """Multi-head attention with pre-LayerNorms on q, k, v and bias-free projections.

    q (B, Lq, C), k/v (B, Lk, C) -> (B, Lq, C); logits scaled by (C / heads) ** -0.5.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads)
        self.proj = Linear(dim, dim)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, lq, c = q.shape
        g = self.num_heads

        def heads(t: Tensor) -> Tensor:  # (B, L, C) -> (B, g, L, C/g)
            return t.unflatten(-1, (g, c // g)).transpose(1, 2)

        q, k, v = (heads(t) for t in self.project(q, k, v))
        if self.record_attention:
            attn = torch.softmax(q @ k.transpose(-2, -1) * (c // g) ** -0.5, dim=-1)
            self.last_attention = attn.detach()  # (B, g, Lq, Lk)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, lq, c))


class R2RFeedForward(nn.Module):
    """Pre-norm MLP with hidden width = C and GELU: (..., C) -> (..., C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, dim)
        self.fc2 = Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def region_tokens(x: Tensor, scales: Sequence[int]) -> Tensor:
    """(N, C, h, w) -> (1, N * sum(s*s), C): per image, pools at each scale, row-major."""
    n, c = x.shape[:2]
    pooled = [F.adaptive_avg_pool2d(x, s).reshape(n, c, -1) for s in scales]
    return torch.cat(pooled, dim=2).transpose(1, 2).reshape(1, -1, c)


class R2R(nn.Module):
    """Region-to-region correlation block: (N, C, h, w) -> (N, C, h, w).

    Args:
        dim: channels C.
        num_heads: attention heads.
        scales: pooling sizes of the key/value regions ({1, 3, 6}: 46 regions per image).
        query_side: taller maps are max-pooled to this many rows for the queries.
        drop_path: DropPath rate (per image on the attention, per group on the FFN).
        init: ``"official"`` (truncated normal, std 0.02, everywhere) or ``"centering"``:
            the value projection starts as the identity and the output projection as
            minus the identity, so that with the near-uniform attention of the start,
            ``F + Attn`` is ``F`` minus the mean of the group's (layer-normed) regions,
            a group centering that training can reshape or undo.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        scales: Sequence[int] = (1, 3, 6),
        query_side: int = 16,
        drop_path: float = 0.1,
        init: str = "official",
    ) -> None:
        super().__init__()
        if init not in ("official", "centering"):
            raise ValueError(f"R2R init must be 'official' or 'centering', got {init!r}")
        self.scales = tuple(scales)
        self.query_side = query_side
        self.drop_path = float(drop_path)
        self.attention = RegionAttention(dim, num_heads)
        self.ffn = R2RFeedForward(dim)
        trunc_normal_init(self)
        if init == "centering":
            with torch.no_grad():
                nn.init.eye_(self.attention.to_v.weight)
                nn.init.eye_(self.attention.proj.weight).neg_()

    @classmethod
    def from_config(cls, dim: int, cfg: Any) -> R2R:
        """The R2R block of a :class:`~dmt_core.model.config.DMTConfig` at width ``dim``."""
        return cls(
            dim, cfg.r2r_heads, cfg.r2r_scales, cfg.r2r_query_side, cfg.drop_path, cfg.r2r_init
        )

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        pooled = h > self.query_side
        if pooled:
            # the official pools to (16, int(w * 16 / h)) and upsamples by h / 16
            qh, qw = self.query_side, int(w * self.query_side / h)
            queries = F.adaptive_max_pool2d(x, (qh, qw))
        else:
            qh, qw, queries = h, w, x
        queries = queries.permute(0, 2, 3, 1).reshape(1, n * qh * qw, c)
        regions = region_tokens(x, self.scales)
        out = self.attention(queries, regions, regions)  # (1, N*qh*qw, C)
        out = out.reshape(n, qh, qw, c).permute(0, 3, 1, 2)
        if pooled:
            out = F.interpolate(out, size=(h, w), mode="nearest")
        x = x + stochastic_depth(out, self.drop_path, "row", self.training)
        # FFN over channels at full resolution; DropPath drops it for the whole group
        y = self.ffn(x.permute(0, 2, 3, 1))
        y = stochastic_depth(y.unsqueeze(0), self.drop_path, "row", self.training).squeeze(0)
        return x + y.permute(0, 3, 1, 2)
