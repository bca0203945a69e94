"""Token-guided feature refinement, TGFR (the official ``Prototype_Refinement``).

At decoder stages 6-2 the tokens turn into maps over the stage feature D, the maps into
soft masks, the masks into per-image prototypes, and the prototypes refine D:

    co, bg, group = head(tokens, D)                       # (N, 1, h, w) logits each
    m_co, m_bg    = minmax(sigmoid(co)), minmax(sigmoid(bg))
    p_co, p_bg    = sum(D * m) / (sum(m) + 1e-8)          # (N, C): weighted GAP per image
    D_co = ReLU(BN(Conv1x1([D; p_co])))                   # 2C -> C, no bias
    D_bg = ReLU(BN(Conv1x1([D_co; p_bg])))
    co_1, co_2 = head2(co, D_co), head3(co, D_bg)         # deep-supervision maps

and D_bg is the next stage's input. A 1x1 conv of [D; p] with p constant over space is
W_D D + W_p p, so the prototype half is a (N, C) vector broadcast over the map: that is
how it is computed here (half the multiply-adds of the official concatenation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import TokenHead
from .layers import bn_scale_shift, c2_xavier_init, conv_bn_act


@dataclass
class StageMaps:
    """The five logit maps of one TGFR stage, each (N, 1, h, w) (bg is None without it)."""

    co: Tensor
    bg: Tensor | None
    group: Tensor | None
    co_after_co_proto: Tensor | None
    co_after_bg_proto: Tensor | None


def minmax_mask(logits: Tensor) -> Tensor:
    """sigmoid, then per-image min-max normalisation: (N, 1, h, w) -> [0, 1].

    Hazard fixed: the official divides by (max - min) with no epsilon, so a constant
    map (e.g. a saturated sigmoid) gives NaN. Here a constant map becomes a mask of
    ones, i.e. plain average pooling; non-constant maps are unchanged.
    """
    p = torch.sigmoid(logits)
    flat = p.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    rng = flat.max(dim=1).values.view(-1, 1, 1, 1) - lo
    safe = torch.where(rng > 0, rng, torch.ones_like(rng))
    return torch.where(rng > 0, (p - lo) / safe, torch.ones_like(p))


def weighted_gap(features: Tensor, mask: Tensor) -> Tensor:
    """features (N, C, h, w), mask (N, 1, h, w) -> prototypes (N, C)."""
    n, c = features.shape[:2]
    m = mask.reshape(n, 1, -1)  # (N, 1, hw)
    num = torch.bmm(m, features.permute(0, 2, 3, 1).reshape(n, -1, c))  # free if channels-last
    return num[:, 0] / (m.sum(dim=2) + 1e-8)


class PrototypeFusion(nn.Module):
    """ReLU(BN(Conv1x1([D; p]))) with p tiled over space: D (N, C, h, w), p (N, C) -> (N, C, h, w).

    The conv weight is stored whole, (C, 2C, 1, 1), as in the official checkpoint.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = conv_bn_act(2 * dim, dim, 1)
        self.dim = dim

    def forward(self, features: Tensor, proto: Tensor) -> Tensor:
        conv, bn = self.block[0], self.block[1]
        w = conv.weight[:, :, 0, 0]
        w_feat, w_proto = w[:, : self.dim, None, None], w[:, self.dim :]
        if self.training or bn.use_group_stats:
            # neither the conv's nor the BN's output is needed by their backward: in place
            x = F.conv2d(features, w_feat).add_((proto @ w_proto.t())[:, :, None, None])
            return F.relu_(bn(x))
        # eval: BN folded into the conv; the prototype term becomes a per-image bias
        scale, shift = bn_scale_shift(bn)
        x = F.conv2d(features, w_feat * scale.view(-1, 1, 1, 1))
        bias = (proto @ w_proto.t()) * scale + shift  # (N, C)
        return F.relu_(x.add_(bias[:, :, None, None]))


class TGFR(nn.Module):
    """Token-guided feature refinement at one stage.

    Args:
        dim: feature and token width C.
        use_bg: refine with the background prototype too (ablation ``use_bg_token``).
        refine: fuse prototypes into the feature (ablation ``use_tgfr``); when off, the
            maps are still predicted (deep supervision) and the feature passes through.

    forward(tokens (N, T, C), group (1, C), D (N, C, h, w), aux) -> (StageMaps, D_next).
    With ``aux=False`` only the maps the refinement needs are computed (inference).
    """

    def __init__(self, dim: int, use_bg: bool = True, refine: bool = True) -> None:
        super().__init__()
        self.use_bg = use_bg
        self.refine = refine
        self.token_head = TokenHead(dim)
        self.co_head_1 = TokenHead(dim)
        self.co_head_2 = TokenHead(dim)
        if refine:
            self.fuse_co = PrototypeFusion(dim)
            if use_bg:
                self.fuse_bg = PrototypeFusion(dim)
        c2_xavier_init(self)

    def forward(
        self, tokens: Tensor, group: Tensor, features: Tensor, aux: bool = True
    ) -> tuple[StageMaps, Tensor]:
        n = tokens.shape[0]
        if aux:  # co, [bg], group in one head call
            all_tokens = torch.cat([tokens, group.expand(n, -1)[:, None]], dim=1)
            maps = self.token_head(all_tokens, features)
            co, group_map = maps[:, :1], maps[:, -1:]
            bg = maps[:, 1:2] if self.use_bg else None
        else:  # the group map is not needed to refine
            maps = self.token_head(tokens, features)
            co, group_map = maps[:, :1], None
            bg = maps[:, 1:2] if self.use_bg else None

        d_co = d_bg = features
        if self.refine:
            d_co = self.fuse_co(features, weighted_gap(features, minmax_mask(co)))
            d_bg = d_co
            if self.use_bg:
                d_bg = self.fuse_bg(d_co, weighted_gap(features, minmax_mask(bg)))

        co_1 = co_2 = None
        if aux:
            co_tok = tokens[:, :1]
            co_1 = self.co_head_1(co_tok, d_co)
            co_2 = self.co_head_2(co_tok, d_bg)
        return StageMaps(co, bg, group_map, co_1, co_2), d_bg
