"""Where and in which precision to run (device selection, the autocast dtype), and the
code version a result was produced with (:func:`git_commit`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda")


def select_device(device: str = "auto", index: int | None = None) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error.

    ``index`` picks the GPU (a torchrun process passes its local rank).
    """
    if device not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return (
        torch.device("cuda", index)
        if device == "cuda" and index is not None
        else torch.device(device)
    )


def amp_dtype(device: torch.device) -> torch.dtype:
    """Autocast dtype: bfloat16 on CPU and on GPUs that support it, else float16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def git_commit(repo: Path) -> str:
    """HEAD of the git checkout at ``repo`` (``-dirty`` with uncommitted changes to tracked
    files), or ``"unknown"`` outside a checkout."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")
