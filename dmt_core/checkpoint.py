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

from .files import atomic_write
from .model.config import DMTConfig


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(obj, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; clear errors for missing or unsafe files."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not a checkpoint; was its writing cut?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:  # permissions and the like: the file system's own message
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with the file name and the reason
        msg = str(e)
        if "Unsupported operand" in msg:
            raise ValueError(
                f"{path}: refused to load: not a PyTorch checkpoint, or a pickle the safe "
                f"loader cannot read ({_detail(msg)})"
            ) from e
        if "Weights only load failed" in msg or "Unsupported global" in msg:
            raise ValueError(
                f"{path}: refused to load: the file's pickle asks for objects other than "
                f"tensors and plain Python types, and loading it could run code. "
                f"Only weights-only checkpoints are accepted.\n  detail: {_detail(msg)}"
            ) from e
        if isinstance(e, EOFError) or "central directory" in msg or "truncat" in msg.lower():
            raise ValueError(
                f"{path}: truncated or damaged checkpoint ({_detail(msg) or type(e).__name__}); "
                "write it again, or resume from another one"
            ) from e
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint ({_detail(msg) or type(e).__name__})"
        ) from e


def _detail(msg: str) -> str:
    """The informative line of a torch.load error ("Unsupported global: ..."), shortened."""
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Unsupported", "WeightsUnpickler")) and line != lines[0]:
            return line[:200]
    return lines[0][:200] if lines else ""


def half_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors in float16 (shipped files); integer buffers unchanged."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def model_checkpoint(model: torch.nn.Module, config: DMTConfig, **extra: Any) -> dict[str, Any]:
    """The minimal project checkpoint: ``{"model": state_dict, "config": dict, ...}``."""
    return {"format": "dmt_core", "model": model.state_dict(), "config": config.to_dict(), **extra}
