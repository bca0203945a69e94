"""ImageNet normalisation: the one home of the constants every part of the project uses.

DMT's VGG16 encoder expects RGB in [0, 1] normalised by the ImageNet channel statistics
(torchvision's ``IMAGENET1K_V1`` preprocessing). The tiny preset's synthetic backbone
was pretrained with the same normalisation, so one pair of functions serves both.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of float images in [0, 1], shape (..., 3, H, W)."""
    return TF.normalize(images, list(IMAGENET_MEAN), list(IMAGENET_STD))


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: (..., 3, H, W) back to [0, 1] (clamped)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images * std + mean).clamp(0, 1)
