"""The six-stage DMT decoder (the official ``CoFormer_Decoder``).

Token memory, computed once from the deepest feature F6 (R2R output, (N, C6, h6, w6)):

    M = LN(Conv1x1(F6)) -> (N, h6*w6, C),   P = sine positions of the h6 x w6 grid

Tokens: per image a co-saliency and a background token (states zero, learned query
embeddings), and one group token for the whole group. The stages run deep to shallow:

    for k in 6, 5, 4, 3, 2, 1:
        D = FPN_k(enc_k, D)                      # lateral 1x1 + upsampled D, 3x3 conv
        if k in 5..2: D = R2R_k(D)               # inter-image region correlation
        tokens = CtP2T_k(tokens, M, P)           # tokens read the fixed memory
        co, group = CoT2T_k(co, group)
        if k >= 2: maps_k, D = TGFR_k(tokens, D) # tokens refine the features
    co, bg, group maps = head(tokens, D)          # at full resolution

The tokens always read the same stage-6 memory (the official code never feeds
decoder features back into the memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DMTConfig
from .cot2t import CoT2T
from .ctp2t import CtP2TLayer
from .heads import TokenHead
from .layers import c2_xavier_init, conv_bn_act, trunc_normal_init
from .r2r import R2R
from .tgfr import TGFR, StageMaps

#: decoder stage -> encoder level it reads (stage 6 reads the R2R output of DASPP)
STAGE_INPUTS = {6: "top", 5: "conv5_3", 4: "conv4_3", 3: "conv3_3", 2: "conv2_2", 1: "conv1_2"}


@lru_cache(maxsize=16)
def _sine_positions(h: int, w: int, dim: int) -> Tensor:
    """DETR sine positions, normalised coordinates x 2pi, temperature 1e4: (h*w, dim)."""
    half = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w)
    y = y / (h + eps) * scale
    x = x / (w + eps) * scale
    dim_t = torch.arange(half, dtype=torch.float32)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)

    def embed(c: Tensor) -> Tensor:
        p = c[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat([embed(y), embed(x)], dim=-1).reshape(h * w, dim)


def sine_positions(h: int, w: int, dim: int, device: torch.device) -> Tensor:
    """(h*w, dim) positions of an h x w grid, cached per size."""
    return _sine_positions(h, w, dim).to(device)


class FPNBlock(nn.Module):
    """(N, C_enc, h, w) [+ previous (N, C, h', w')] -> (N, C, h, w).

    With a previous feature: 3x3conv-BN-ReLU(BN(Conv1x1(enc)) + bilinear_up(prev)),
    align_corners=True; without (stage 6): 3x3conv-BN-ReLU(enc).
    """

    def __init__(self, in_ch: int, dim: int, first: bool = False) -> None:
        super().__init__()
        self.lateral = None if first else conv_bn_act(in_ch, dim, 1, relu=False)
        self.conv = conv_bn_act(in_ch if first else dim, dim, 3)
        c2_xavier_init(self)

    def forward(self, enc: Tensor, prev: Tensor | None = None) -> Tensor:
        if self.lateral is None or prev is None:
            return self.conv(enc)
        x = self.lateral(enc)  # a fresh tensor that no backward needs: add in place
        x = x.add_(F.interpolate(prev, size=x.shape[-2:], mode="bilinear", align_corners=True))
        return self.conv(x)


class TokenStage(nn.Module):
    """CtP2T then CoT2T for one decoder stage (the official ``Parse``)."""

    def __init__(self, cfg: DMTConfig, dropout: float) -> None:
        super().__init__()
        c = cfg.hidden_dim
        # the gate contrasts each token with the others: without a bg token there is none
        contrast = cfg.use_contrast and cfg.use_bg_token
        self.ctp2t = CtP2TLayer(c, cfg.num_heads, cfg.token_ffn_dim, dropout, contrast=contrast)
        self.cot2t = CoT2T(c, cfg.num_heads, cfg.token_ffn_dim, dropout) if cfg.use_cot2t else None
        trunc_normal_init(self)

    def forward(
        self,
        tokens: Tensor,
        token_embed: Tensor,
        group: Tensor,
        group_embed: Tensor,
        memory: Tensor,
        pos: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """tokens, token_embed (N, T, C); group, group_embed (1, C); memory, pos (N, HW, C)."""
        tokens = self.ctp2t(tokens, token_embed, memory, pos)
        if self.cot2t is not None:
            co, group = self.cot2t(tokens[:, 0], token_embed[:, 0], group, group_embed)
            tokens = torch.cat([co.unsqueeze(1), tokens[:, 1:]], dim=1)
        return tokens, group


class DecoderStage(nn.Module):
    """FPN conv, optional R2R, token update, optional TGFR: one of the six stages."""

    def __init__(self, cfg: DMTConfig, stage: int, in_ch: int) -> None:
        super().__init__()
        self.stage = stage
        c = cfg.hidden_dim
        self.fpn = FPNBlock(in_ch, c, first=stage == 6)
        self.r2r = R2R.from_config(c, cfg) if cfg.use_r2r and 2 <= stage <= 5 else None
        self.tokens = TokenStage(cfg, cfg.stage_dropouts()[stage])
        self.tgfr = TGFR(c, use_bg=cfg.use_bg_token, refine=cfg.use_tgfr) if stage >= 2 else None


class DMTDecoder(nn.Module):
    """Tokens and features, six stages deep to shallow.

    forward(features {level: (N, C_l, h_l, w_l)} incl. "top", aux) returns
    (co, bg, group) full-resolution logits (N, 1, H, W) (bg None without the bg token)
    and the list of :class:`StageMaps` for stages 6..2. With ``aux=False`` (inference)
    only co is computed: bg and group are None and the list is empty.
    """

    def __init__(self, cfg: DMTConfig) -> None:
        super().__init__()
        c = cfg.hidden_dim
        self.cfg = cfg
        self.num_tokens = 2 if cfg.use_bg_token else 1
        self.token_embed = nn.Embedding(self.num_tokens, c)  # row 0 co, row 1 bg
        self.group_embed = nn.Embedding(1, c)
        self.memory_proj = nn.Conv2d(cfg.daspp_dim, c, 1)
        # Hazard fixed: the official sets this LayerNorm's *bias* to 1.0 (a typo for the
        # weight); it is initialised as intended here, weight 1 and bias 0 (the PyTorch
        # default). Loaded checkpoints are unaffected.
        self.memory_norm = nn.LayerNorm(c)
        in_channels = dict(zip((1, 2, 3, 4, 5), cfg.encoder_widths, strict=True))
        in_channels[6] = cfg.daspp_dim
        self.stages = nn.ModuleList(
            DecoderStage(cfg, k, in_channels[k]) for k in (6, 5, 4, 3, 2, 1)
        )
        self.final_head = TokenHead(c)
        c2_xavier_init(self.memory_proj)

    def forward(
        self, features: dict[str, Tensor], aux: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor | None, list[StageMaps]]:
        top = features["top"]
        n, _, h, w = top.shape
        memory = self.memory_proj(top).flatten(2).transpose(1, 2)  # (N, HW, C)
        memory = self.memory_norm(memory)
        pos = sine_positions(h, w, memory.shape[-1], memory.device).to(memory.dtype)
        pos = pos.unsqueeze(0).expand(n, -1, -1)
        token_embed = self.token_embed.weight.unsqueeze(0).expand(n, -1, -1)  # (N, T, C)
        group_embed = self.group_embed.weight  # (1, C)
        tokens = torch.zeros_like(token_embed)
        group = torch.zeros_like(group_embed)

        stage_maps: list[StageMaps] = []
        d: Tensor | None = None
        for stage in self.stages:
            d = stage.fpn(features[STAGE_INPUTS[stage.stage]], d)
            if stage.r2r is not None:
                d = stage.r2r(d)
            tokens, group = stage.tokens(tokens, token_embed, group, group_embed, memory, pos)
            if stage.tgfr is not None:
                maps, d = stage.tgfr(tokens, group, d, aux=aux)
                if aux:
                    stage_maps.append(maps)
        assert d is not None
        if not aux:  # inference needs the co map only
            return self.final_head(tokens[:, :1], d), None, None, stage_maps
        final = self.final_head(torch.cat([tokens, group.expand(n, -1)[:, None]], dim=1), d)
        bg = final[:, 1:2] if self.num_tokens == 2 else None
        return final[:, :1], bg, final[:, -1:], stage_maps


def stage_sizes(size: int) -> Sequence[int]:
    """Side of the per-stage maps (stages 6..2) for a square input of ``size``."""
    return (size // 16, size // 16, size // 8, size // 4, size // 2)
