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
    if not isinstance(ck["config"], dict) or not isinstance(ck["model"], dict):
        raise ValueError(f"{source}: 'config' and 'model' must be dicts in a dmt_core checkpoint")
    try:
        config = DMTConfig.from_dict(ck["config"])
    except ValueError as e:
        raise ValueError(f"{source}: its config is not valid here ({e})") from e
    model = DMT(config)
    problems = weight_mismatches(model.state_dict(), ck["model"])
    if problems:
        raise ValueError(
            f"{source}: the weights do not fit the config it holds ({describe_config(config)}):"
            "\n  " + "\n  ".join(problems)
        )
    try:
        model.load_state_dict(ck["model"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"{source}: weights do not fit its config ({str(e)[:300]})") from e
    return model.to(map_location).eval(), config


#: how many mismatching keys of each kind a message names
SHOW_KEYS = 3


def weight_mismatches(
    expected: dict[str, torch.Tensor], got: dict[str, Any], show: int = SHOW_KEYS
) -> list[str]:
    """Short lines on how state dict ``got`` differs from ``expected`` ([] when it fits):
    the counts of missing, unexpected and mis-shaped keys and the first ``show`` of each."""

    def first(keys: list[str]) -> str:
        more = f", ... ({len(keys) - show} more)" if len(keys) > show else ""
        return ", ".join(keys[:show]) + more

    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {tuple(got[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and isinstance(got[k], torch.Tensor) and got[k].shape != v.shape
    ]
    lines = []
    if missing:
        lines.append(f"{len(missing)} missing key(s): {first(missing)}")
    if unexpected:
        lines.append(f"{len(unexpected)} unexpected key(s): {first(unexpected)}")
    if shapes:
        lines.append(f"{len(shapes)} tensor(s) of another shape: {first(shapes)}")
    return lines


def describe_config(config: DMTConfig) -> str:
    """A few words on a config: its preset when it matches one's widths, and its sizes."""
    from .config import PRESETS

    preset = next(
        (
            name
            for name in PRESETS
            if DMTConfig.preset(name).encoder_widths == config.encoder_widths
            and DMTConfig.preset(name).hidden_dim == config.hidden_dim
        ),
        None,
    )
    what = f"the {preset} preset's widths" if preset else "a custom config"
    return (
        f"{what}: encoder_widths {list(config.encoder_widths)}, hidden_dim "
        f"{config.hidden_dim}, input_size {config.input_size}"
    )
