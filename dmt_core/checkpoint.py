"""Checkpoint files: atomic writes and loads that never execute code.

Every checkpoint the project writes is a dict of tensors and plain Python types (the
config as a dict), so ``torch.load(..., weights_only=True)`` reads it; files whose
pickle asks for anything else are refused with a message naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .config import DMTConfig
from .files import atomic_write


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(obj, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; clear errors for missing or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name and the reason
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported global" in msg:
            raise ValueError(
                f"{path}: refused to load: the file's pickle asks for objects other than "
                f"tensors and plain Python types, and loading it could run code. "
                f"Only weights-only checkpoints are accepted.\n  detail: {msg.splitlines()[0]}"
            ) from e
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint ({msg.splitlines()[0]})"
        ) from e


def half_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors in float16 (shipped files); integer buffers unchanged."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def model_checkpoint(model: torch.nn.Module, config: DMTConfig, **extra: Any) -> dict[str, Any]:
    """The minimal project checkpoint: ``{"model": state_dict, "config": dict, ...}``."""
    return {"format": "dmt_core", "model": model.state_dict(), "config": config.to_dict(), **extra}


def load_model(
    checkpoint: str | os.PathLike | dict[str, Any], map_location: Any = "cpu"
) -> tuple[torch.nn.Module, DMTConfig]:
    """A DMT model (eval mode) and its config from a project checkpoint.

    Accepts the files ``dmt train`` writes (``final.pt``, ``last.pt``) and those of
    ``dmt convert-official``: a dict with ``model`` (state dict) and ``config`` (dict).
    """
    from .model import DMT

    source = "checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
    ck = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location)
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        keys = sorted(ck)[:8] if isinstance(ck, dict) else type(ck).__name__
        raise ValueError(
            f"{source}: not a dmt_core checkpoint (expected a dict with 'model' and 'config', "
            f"got {keys}); convert official weights with 'dmt convert-official IN OUT' first"
        )
    config = DMTConfig.from_dict(ck["config"])
    model = DMT(config)
    try:
        model.load_state_dict(ck["model"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"{source}: weights do not fit its config ({e})") from e
    return model.to(map_location).eval(), config
