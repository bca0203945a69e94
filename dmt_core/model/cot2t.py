"""Co-saliency token-to-token correlation, CoT2T (the official ``Trans_Tokes2Tokes`` x 2).

One *group token* g (1, 1, C) summarises the N co-saliency tokens of the group:

    gather:      g  = g  + Dropout(MHA(LN(g) + e_g,   co + e_co, co));  g  = g  + FFN(g)
    distribute:  co = co + Dropout(MHA(LN(co) + e_co, g + e_g,   g));   co = co + FFN(co)

Only the queries are layer-normed; keys and values are the raw token states. In the
distribute step every co token attends to the single group token (softmax weight 1).
Background tokens do not take part.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Linear


class TokenCrossAttentionLayer(nn.Module):
    """Pre-norm cross-attention + GELU FFN, batch-first.

    tokens, query_embed (B, Lq, C); memory, memory_embed (B, Lk, C) -> (B, Lq, C).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = Linear(dim, ffn_dim)
        self.linear2 = Linear(ffn_dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.last_attention: Tensor | None = None
        self.record_attention = False

    def forward(
        self, tokens: Tensor, query_embed: Tensor, memory: Tensor, memory_embed: Tensor
    ) -> Tensor:
        q = self.norm1(tokens) + query_embed
        out, weights = self.cross_attn(
            q, memory + memory_embed, memory, need_weights=self.record_attention
        )
        if self.record_attention:
            self.last_attention = weights.detach()  # (B, Lq, Lk), averaged over heads
        tokens = tokens + self.dropout1(out)
        x = self.linear2(self.dropout(F.gelu(self.linear1(self.norm2(tokens)))))
        return tokens + self.dropout2(x)


class CoT2T(nn.Module):
    """Gather the co tokens into the group token, then distribute it back.

    Args:
        dim, num_heads, ffn_dim, dropout: as in :class:`TokenCrossAttentionLayer`.

    Shapes: co, co_embed (N, C); group, group_embed (1, C) -> co (N, C), group (1, C).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.gather = TokenCrossAttentionLayer(dim, num_heads, ffn_dim, dropout)
        self.distribute = TokenCrossAttentionLayer(dim, num_heads, ffn_dim, dropout)

    def forward(
        self, co: Tensor, co_embed: Tensor, group: Tensor, group_embed: Tensor
    ) -> tuple[Tensor, Tensor]:
        # one sequence of N co tokens, batch 1
        co, co_embed = co.unsqueeze(0), co_embed.unsqueeze(0)
        group, group_embed = group.unsqueeze(0), group_embed.unsqueeze(0)
        group = self.gather(group, group_embed, co, co_embed)
        co = self.distribute(co, co_embed, group, group_embed)
        return co.squeeze(0), group.squeeze(0)
