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
(``vgg16-397923af.pth``), copied conv by conv in order.

``batch_norm=True`` puts a BatchNorm after every conv (torchvision's ``vgg16_bn``
layout; ``VGG16_BN_Weights.IMAGENET1K_V1`` loads into it). DMT itself uses plain VGG16;
the BN variant is what lets the tiny preset learn its features from scratch quickly
(a 13-conv VGG without normalisation barely moves in a few hundred CPU steps).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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
VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_BN_FILENAME = "vgg16_bn-6c64b313.pth"
ENV_VGG16 = "DMT_VGG16_WEIGHTS"


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
        from .layers import GroupBatchNorm2d

        self.widths = tuple(widths)
        self.batch_norm = batch_norm
        in_ch = 3
        for (block, n_convs), width in zip(_BLOCKS, self.widths, strict=True):
            for i in range(1, n_convs + 1):
                self.add_module(f"conv{block}_{i}", nn.Conv2d(in_ch, width, 3, padding=1))
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


def load_vgg16_imagenet(
    path: str | os.PathLike | None = None, batch_norm: bool = False
) -> dict[str, Tensor]:
    """ImageNet VGG16 (or VGG16-BN) weights as a torchvision state dict.

    ``path`` (or the environment variable ``DMT_VGG16_WEIGHTS``) names a local
    ``vgg16-397923af.pth`` (``vgg16_bn-6c64b313.pth`` with ``batch_norm``); otherwise
    torchvision's weights API fetches and caches it (``$TORCH_HOME/hub/checkpoints``).
    Offline, the error says how to provide the file.
    """
    from torchvision.models import VGG16_BN_Weights, VGG16_Weights

    weights = VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else VGG16_Weights.IMAGENET1K_V1
    filename = VGG16_BN_FILENAME if batch_norm else VGG16_FILENAME
    path = path or os.environ.get(ENV_VGG16)
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"VGG16 weights file {p} does not exist")
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - re-raised with the file name
            raise ValueError(f"{p}: not a loadable VGG16 state dict ({e})") from e

    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return weights.get_state_dict(progress=True, check_hash=False, weights_only=True)
    except Exception as e:  # noqa: BLE001 - offline machines get a clear instruction
        raise RuntimeError(
            f"Could not download the ImageNet weights from {weights.url} ({e}).\n"
            f"Provide the file {filename} by one of:\n"
            f"  * copying it to {hub_dir / filename} (torchvision's cache),\n"
            f"  * setting {ENV_VGG16}=/path/to/{filename},\n"
            f"  * passing pretrained='/path/to/{filename}',\n"
            f"or build the model with pretrained=False."
        ) from e
