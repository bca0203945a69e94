"""Small helpers for the tests: seeded tiny models, random groups, the reference's place.

Import from here, not from ``conftest``: ``notebooks/conftest.py`` shares that module name.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
#: the official model's numerical reference (``../shared/reference`` beside the clone)
REFERENCE_DIR = Path(os.environ.get("DMT_REFERENCE_DIR", REPO.parent / "shared" / "reference"))


def tiny_model(seed: int = 0, **overrides) -> torch.nn.Module:
    from dmt_core import DMT, DMTConfig

    torch.manual_seed(seed)
    return DMT(DMTConfig.tiny(**overrides))


def group(n: int = 3, size: int = 64, seed: int = 0, width: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, width or size, generator=g)
