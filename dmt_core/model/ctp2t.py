"""Contrast-induced pixel-to-token correlation, CtP2T (the official ``Trans_Feat2Tokes``).

Each image has T tokens (T = 2: co-saliency, background) that read that image's
pixel memory only. One layer (DETR-style, pre-norm, batch-first):

    S = S + Dropout(SelfAttn(LN1(S) + E, LN1(S) + E, LN1(S)))      # co <-> bg, per image
    S = S + Dropout(ContrastAttention(LN2(S) + E, M + P, M))        # tokens read pixels
    S = S + Dropout(FFN_relu(LN3(S)))

with tokens S and their query embeddings E of shape (N, T, C), memory M and its sine
positions P of shape (N, HW, C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Linear, NormedQKV


class ContrastAttention(NormedQKV):
    """Pixel-to-token attention with the contrast gate.

    For image n, token t, head g (head dim d = C / heads) and pixel j:

        A[t, g, j] = softmax_j(<q_t^g, k_j^g> / sqrt(d))
        O[t, g]    = sum_j A[t, g, j] * v_j                # values are NOT split into heads
        U, V       = proj1(O), proj2(O)                    # (T, heads, C)
        s[t, c]    = mean_{t' != t} sum_g U[t, g, c] * mean_c' V[t', g, c']
        gate[t]    = sigmoid(w * (-s[t]) + b)              # depthwise affine per channel
        y[t]       = gate[t] * mean_g O[t, g]              # no output projection

    ``s`` is the official off-diagonal mean of the (T, T, C, C) contrast tensor, computed
    in factorised form. With ``contrast=False`` the gate is dropped: y = mean_g O.

    Shapes: q (N, T, C), k and v (N, HW, C) -> (N, T, C).
    """

    def __init__(self, dim: int, num_heads: int, contrast: bool = True) -> None:
        super().__init__(dim, num_heads)
        self.contrast = contrast
        if contrast:
            self.proj1 = Linear(dim, dim)
            self.proj2 = Linear(dim, dim)
            # per-channel affine gate, stored as the official depthwise Conv1d (C, 1, 1)
            self.gate_weight = nn.Parameter(torch.empty(dim, 1, 1))
            self.gate_bias = nn.Parameter(torch.empty(dim))
            conv = nn.Conv1d(dim, dim, 1, groups=dim)  # PyTorch's default init, as official
            with torch.no_grad():
                self.gate_weight.copy_(conv.weight)
                self.gate_bias.copy_(conv.bias)
        self.last_gate: Tensor | None = None

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        n, t, c = q.shape
        g = self.num_heads
        q, k, v = self.project(q, k, v)  # v (N, HW, C) is shared by all heads
        q = q.unflatten(-1, (g, c // g)).transpose(1, 2)  # (N, g, T, d)
        k = k.unflatten(-1, (g, c // g)).transpose(1, 2)  # (N, g, HW, d)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (c // g) ** -0.5, dim=-1)  # (N, g, T, HW)
        out = (attn @ v.unsqueeze(1)).transpose(1, 2)  # (N, T, g, C)
        if self.record_attention:
            self.last_attention = attn.detach()
        mean_out = out.mean(dim=2)  # (N, T, C)
        if not self.contrast:
            return mean_out
        if t < 2:
            raise ValueError("the contrast gate needs at least two tokens (co and bg)")
        u = self.proj1(out)  # (N, T, g, C)
        mu = self.proj2(out).mean(dim=-1)  # (N, T, g): mean over the "other" channel axis
        others = (mu.sum(dim=1, keepdim=True) - mu) / (t - 1)  # mean over t' != t
        s = torch.einsum("ntgc,ntg->ntc", u, others)  # heads summed, as the official einsum
        gate = torch.sigmoid(-s * self.gate_weight.view(c) + self.gate_bias)
        if self.record_attention:
            self.last_gate = gate.detach()
        return gate * mean_out


class CtP2TLayer(nn.Module):
    """Token self-attention, contrast pixel-to-token attention, FFN (sizes in module doc).

    Args:
        dim: token width C.
        num_heads: heads of both attentions.
        ffn_dim: hidden width of the ReLU FFN.
        dropout: rate of every dropout, attention weights included.
        contrast: use the contrast gate (ablation ``use_contrast``).
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, dropout: float, contrast: bool = True
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = ContrastAttention(dim, num_heads, contrast=contrast)
        self.linear1 = Linear(dim, ffn_dim)
        self.linear2 = Linear(ffn_dim, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))

    def forward(self, tokens: Tensor, query_embed: Tensor, memory: Tensor, pos: Tensor) -> Tensor:
        """tokens, query_embed (N, T, C); memory, pos (N, HW, C) -> tokens (N, T, C)."""
        x = self.norm1(tokens)
        qk = x + query_embed
        tokens = tokens + self.dropout1(self.self_attn(qk, qk, x, need_weights=False)[0])
        x = self.cross_attn(self.norm2(tokens) + query_embed, memory + pos, memory)
        tokens = tokens + self.dropout2(x)
        x = self.linear2(self.dropout(F.relu(self.linear1(self.norm3(tokens)))))
        return tokens + self.dropout3(x)
