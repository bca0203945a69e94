"""VGG16 encoder with five output levels (the official ``B2_VGG``).

Thirteen 3x3 convs with bias, each followed by ReLU; blocks 2-5 start with a 2x2
max-pool; no pool5 and no classifier. For an (N, 3, H, W) group it returns

========  ======================  ======
level     shape (paper widths)    stride
========  ======================  ======
conv1_2   (N, 64, H, W)           1
conv2_2   (N, 128, H/2, W/2)      2
conv3_3   (N, 256, H/4, W/4)      4
conv4_3   (N, 512, H/8, W/8)      8
conv5_3   (N, 512, H/16, W/16)    16
========  ======================  ======

ImageNet weights come from torchvision's ``VGG16_Weights.IMAGENET1K_V1``
(``vgg16-397923af.pth``, registered in :mod:`dmt_core.weights`), copied conv by conv in
order by :meth:`VGG16Encoder.load_torchvision_vgg16`.

``batch_norm=True`` puts a BatchNorm after every conv (torchvision's ``vgg16_bn``
layout; ``VGG16_BN_Weights.IMAGENET1K_V1`` loads into it). DMT itself uses plain VGG16;
the BN variant is what lets the tiny preset learn its features from scratch quickly
(a 13-conv VGG without normalisation barely moves in a few hundred CPU steps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
#: (block, number of convs) of VGG16
_BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
CONV_NAMES = tuple(f"conv{b}_{i}" for b, n in _BLOCKS for i in range(1, n + 1))
#: indices of the 13 convs in ``torchvision.models.vgg16().features``
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
#: the same in ``torchvision.models.vgg16_bn().features`` (each BN follows its conv)
TORCHVISION_BN_CONV_INDICES = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)


class VGG16Encoder(nn.Module):
    """Five-level VGG16 feature extractor.

    Args:
        widths: output channels of the five blocks ((64, 128, 256, 512, 512) is VGG16).
        trainable: ``"last"`` trains conv5_3 only (as in DMT), ``"all"`` or ``"none"``.
        batch_norm: a BatchNorm after every conv (``bn1_1`` .. ``bn5_3``), as VGG16-BN.
            The BNs of frozen convs are frozen whole: they stay in eval mode (running
            statistics, never updated) whatever ``train()`` says, as torchvision's
            detection models freeze theirs.
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512, 512),
        trainable: str = "last",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        from .layers import Conv2d, GroupBatchNorm2d

        self.widths = tuple(widths)
        self.batch_norm = batch_norm
        in_ch = 3
        for (block, n_convs), width in zip(_BLOCKS, self.widths, strict=True):
            for i in range(1, n_convs + 1):
                self.add_module(f"conv{block}_{i}", Conv2d(in_ch, width, 3, padding=1))
                if batch_norm:
                    self.add_module(f"bn{block}_{i}", GroupBatchNorm2d(width))
                in_ch = width
        self.set_trainable(trainable)

    def set_trainable(self, trainable: str) -> None:
        """Freeze the convs (and BNs) that DMT does not fine-tune (``requires_grad=False``)."""
        if trainable not in ("last", "all", "none"):
            raise ValueError(f"trainable must be 'last', 'all' or 'none', got {trainable!r}")
        for name in CONV_NAMES:
            on = trainable == "all" or (trainable == "last" and name == "conv5_3")
            for p in getattr(self, name).parameters():
                p.requires_grad_(on)
            if self.batch_norm:
                for p in getattr(self, "bn" + name[4:]).parameters():
                    p.requires_grad_(on)

    def train(self, mode: bool = True) -> VGG16Encoder:
        super().train(mode)
        if self.batch_norm:
            for name in CONV_NAMES:
                if not getattr(self, name).weight.requires_grad:
                    getattr(self, "bn" + name[4:]).eval()
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) -> {level: (N, C_level, H / stride, W / stride)}."""
        feats: dict[str, Tensor] = {}
        for block, n_convs in _BLOCKS:
            if block > 1:
                x = F.max_pool2d(x, 2)
            for i in range(1, n_convs + 1):
                x = getattr(self, f"conv{block}_{i}")(x)
                if self.batch_norm:
                    x = getattr(self, f"bn{block}_{i}")(x)
                x = F.relu(x, inplace=True)
            feats[f"conv{block}_{n_convs}"] = x
        return feats

    # ------------------------------------------------------------------ weights
    def load_torchvision_vgg16(self, state_dict: dict[str, Tensor], source: str = "") -> None:
        """Copy the 13 convs (and BNs) of a torchvision ``vgg16()`` / ``vgg16_bn()`` state dict.

        Any widths work as long as the shapes match (e.g. the shipped tiny backbone).
        """
        what = "VGG16-BN" if self.batch_norm else "VGG16"
        indices = TORCHVISION_BN_CONV_INDICES if self.batch_norm else TORCHVISION_CONV_INDICES
        pairs: list[tuple[nn.Module, int, tuple[str, ...]]] = []
        for name, idx in zip(CONV_NAMES, indices, strict=True):
            pairs.append((getattr(self, name), idx, ("weight", "bias")))
            if self.batch_norm:
                leaves = ("weight", "bias", "running_mean", "running_var")
                pairs.append((getattr(self, "bn" + name[4:]), idx + 1, leaves))
        for module, idx, leaves in pairs:
            for leaf in leaves:
                key = f"features.{idx}.{leaf}"
                if key not in state_dict:
                    raise ValueError(f"{source or what + ' state dict'}: missing key {key!r}")
                src, dst = state_dict[key], getattr(module, leaf)
                if src.shape != dst.shape:
                    raise ValueError(
                        f"{source or what + ' state dict'}: {key} has shape {tuple(src.shape)}, "
                        f"expected {tuple(dst.shape)}"
                    )
                with torch.no_grad():
                    dst.copy_(src)
