"""DMT: the whole co-salient object detector.

images (N, 3, H, W)  one group of N related images, ImageNet-normalised RGB
  -> VGG16 encoder (5 levels)
  -> DASPP(conv5_3) -> R2R -> "top" feature (N, C5, H/16, W/16)
  -> six-stage decoder (tokens + features)
  -> DMTOutput: co / bg / group logits (N, 1, H, W) + per-stage maps (stages 6..2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .config import DMTConfig
from .daspp import DASPP
from .decoder import DMTDecoder
from .encoder import VGG16Encoder
from .layers import GroupBatchNorm2d, check_group
from .r2r import R2R
from .tgfr import StageMaps


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


#: official output key -> StageMaps attribute
OFFICIAL_STAGE_KEYS = {
    "stage_co_preds": "co",
    "stage_bg_preds": "bg",
    "stage_com_preds": "group",
    "stage_co_preds_1": "co_after_co_proto",
    "stage_co_preds_2": "co_after_bg_proto",
}


@dataclass
class DMTOutput:
    """Logits of one group.

    Attributes:
        co: co-saliency map (N, 1, H, W); ``sigmoid(co)`` is the prediction.
        bg: background map (N, 1, H, W); None without the background token or when the
            forward ran without side outputs (``aux=False``, the eval default).
        group: map of the group token (N, 1, H, W); None when ``aux=False``.
        stages: per-stage maps of stages 6, 5, 4, 3, 2 (sides H/16, H/16, H/8, H/4, H/2),
            for deep supervision; empty when the forward was asked for no side outputs.
    """

    co: Tensor
    bg: Tensor | None
    group: Tensor | None
    stages: list[StageMaps] = field(default_factory=list)

    def to_official_dict(self) -> dict[str, Any]:
        """The same tensors under the official ``CoSODNet`` output names."""
        out: dict[str, Any] = {"co_pred": self.co, "bg_pred": self.bg, "com_pred": self.group}
        for key, attr in OFFICIAL_STAGE_KEYS.items():
            out[key] = [getattr(s, attr) for s in self.stages]
        return out


class DMT(nn.Module):
    """Discriminative co-saliency and background mining transformer.

    Args:
        config: the architecture (``DMTConfig.paper()`` or ``DMTConfig.tiny()``). The
            weights start random; :func:`dmt_core.weights.create_model` builds a DMT on a
            pretrained encoder, :func:`dmt_core.weights.load_model` a trained one.
        channels_last: keep conv weights and activations channels-last (faster on CPU
            and with GPU mixed precision; outputs equal up to float rounding).

    ``forward(images, aux=None)``: images (N, 3, H, W) with H, W multiples of 16 are ONE
    group. ``aux`` asks for the per-stage maps; by default they are computed in training
    mode only (inference does not need them).
    """

    def __init__(
        self,
        config: DMTConfig | None = None,
        channels_last: bool = True,
    ):
        super().__init__()
        cfg = config or DMTConfig.paper()
        self.config = cfg
        self.encoder = VGG16Encoder(
            cfg.encoder_widths, trainable=cfg.encoder_trainable, batch_norm=cfg.encoder_bn
        )
        self.daspp = DASPP(cfg.daspp_dim, cfg.daspp_branch_dim, cfg.daspp_dilations)
        self.r2r = R2R.from_config(cfg.daspp_dim, cfg) if cfg.use_r2r else None
        self.decoder = DMTDecoder(cfg)
        for m in self.modules():
            if isinstance(m, GroupBatchNorm2d):
                m.image_groups = int(cfg.image_norm_groups)
        if cfg.frozen_bn_stats == "running":
            for m in self.encoder.modules():
                if isinstance(m, GroupBatchNorm2d) and not m.weight.requires_grad:
                    m.frozen = True
        self.set_bn_scope(cfg.bn_scope)
        self.set_inference_bn(cfg.bn_inference)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def channels_last(self) -> bool:
        """Whether the conv weights are channels-last (then inputs are converted to match)."""
        return self.encoder.conv1_1.weight.is_contiguous(memory_format=torch.channels_last)

    def set_bn_scope(self, scope: str) -> DMT:
        """What BatchNorm statistics cover: ``"group"`` (all images) or ``"image"`` (each alone).

        Training schedules that start with group statistics switch this per step; the
        config keeps the scope the model is meant to be used with.
        """
        if scope not in ("group", "image"):
            raise ValueError(f"bn_scope must be 'group' or 'image', got {scope!r}")
        for m in self.modules():
            if isinstance(m, GroupBatchNorm2d):
                m.per_image = scope == "image"
        return self

    def set_inference_bn(self, mode: str) -> DMT:
        """``"running"``: eval uses running statistics; ``"group"``: the group's own."""
        if mode not in ("running", "group"):
            raise ValueError(f"inference BN mode must be 'running' or 'group', got {mode!r}")
        self.config.bn_inference = mode  # type: ignore[assignment]
        for m in self.modules():
            if isinstance(m, GroupBatchNorm2d):
                m.use_group_stats = mode == "group"
        return self

    def capture_attention(self, on: bool = True) -> DMT:
        """Keep the attention maps of every attention layer in its ``.last_attention``."""
        for m in self.modules():
            if m is not self and hasattr(m, "record_attention"):
                m.record_attention = on
                if not on:
                    m.last_attention = None
        return self

    def forward(self, images: Tensor, aux: bool | None = None) -> DMTOutput:
        check_group(images)
        weight_dtype = self.encoder.conv1_1.weight.dtype
        if images.dtype != weight_dtype and not _autocast_on(images.device.type):
            raise ValueError(
                f"images are {images.dtype} but the model's weights are {weight_dtype}: "
                f"convert one to the other (images.to({weight_dtype}) or model.to(...)), "
                "or run the model under torch.autocast"
            )
        if aux is None:
            aux = self.training
        if self.channels_last:  # ~1.7x faster convs on CPU (oneDNN), recommended on GPU too
            images = images.contiguous(memory_format=torch.channels_last)
        feats = self.encoder(images)
        top = self.daspp(feats["conv5_3"])
        if self.r2r is not None:
            top = self.r2r(top)
        feats["top"] = top
        co, bg, group, stages = self.decoder(feats, aux=aux)
        return DMTOutput(co, bg, group, stages)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Co-saliency probabilities (N, 1, H, W) in [0, 1], in the current mode."""
        return torch.sigmoid(self(images, aux=False).co)

    def param_groups(
        self, lr: float, backbone_lr_scale: float = 0.01, module_lr_scale: float = 1.0
    ) -> list[dict[str, Any]]:
        """Adam parameter groups: the trainable encoder at ``lr * backbone_lr_scale``, the
        attention modules (R2R, CtP2T, CoT2T) at ``lr * module_lr_scale``, the rest at ``lr``.

        The paper trains everything but the encoder at one rate (``module_lr_scale=1``:
        the modules stay in the ``decoder`` group).
        """
        enc = [p for p in self.encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in self.encoder.parameters()}
        mod_ids: set[int] = set()
        if module_lr_scale != 1.0:
            blocks: list[nn.Module] = [self.r2r] if self.r2r is not None else []
            for st in self.decoder.stages:
                blocks += [b for b in (st.r2r, st.tokens) if b is not None]
            mod_ids = {id(p) for b in blocks for p in b.parameters()}
        rest = [
            p
            for p in self.parameters()
            if p.requires_grad and id(p) not in enc_ids and id(p) not in mod_ids
        ]
        groups = [{"params": rest, "lr": lr, "name": "decoder"}]
        mods = [p for p in self.parameters() if p.requires_grad and id(p) in mod_ids]
        if mods:
            groups.append({"params": mods, "lr": lr * module_lr_scale, "name": "modules"})
        if enc:
            groups.insert(0, {"params": enc, "lr": lr * backbone_lr_scale, "name": "encoder"})
        return groups
