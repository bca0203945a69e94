"""Small helpers for the tests: seeded tiny models and random groups."""

from __future__ import annotations

import torch


def tiny_model(seed: int = 0, **overrides) -> torch.nn.Module:
    from dmt_core import DMT, DMTConfig

    torch.manual_seed(seed)
    return DMT(DMTConfig.tiny(**overrides))


def group(n: int = 3, size: int = 64, seed: int = 0, width: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, width or size, generator=g)
