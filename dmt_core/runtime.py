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


#: ``--amp`` of dmt train and dmt predict
AMP_MODES = ("auto", "off", "bf16", "fp16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: CPUs (autocast's CPU dtype) and
    GPUs of compute capability 8.0 or newer (Ampere on). A T4 (7.5) or V100 (7.0) reports
    ``torch.cuda.is_bf16_supported()`` through emulation, without tensor cores."""
    if device.type != "cuda":
        return True
    return torch.cuda.get_device_capability(device) >= (8, 0)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision dtype that fits ``device``: bfloat16 where it is native,
    float16 (with a gradient scaler in training) on older GPUs."""
    return torch.bfloat16 if native_bf16(device) else torch.float16


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: ``auto`` is on for GPUs only (:func:`amp_dtype`), ``off`` is float32,
    ``bf16`` / ``fp16`` force that dtype. None means no autocast."""
    if amp not in AMP_MODES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp) or amp_dtype(device)


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
