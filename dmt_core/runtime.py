"""Where and in which precision to run (device selection, the autocast dtype), how the
CPU allocator treats freed memory (:func:`retain_freed_memory`), and the code version a
result was produced with (:func:`git_commit`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
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


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def retain_freed_memory() -> bool:
    """Let the C allocator keep freed memory for reuse instead of handing it back (glibc).

    PyTorch's CPU tensors come from ``malloc``. glibc serves every block of 32 MB or more
    (a 4 x 256 x 128 x 128 activation is 64 MB) with a fresh ``mmap`` and unmaps it on
    free, so each training step page-faults all its large activations and gradients in
    again: 7-14 % of a paper-preset step on a 2-core CPU (``benchmarks/bench_train.py``).
    This turns ``mmap`` off for malloc and the heap trim off, so the freed blocks stay
    mapped; the resident memory then stays at the run's peak. Process-wide and not
    reversible; call it in processes that train on the CPU. Returns False (and changes
    nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def adam(params: list[dict], **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` in its fused form (one kernel for all tensors, 1-3 % of a
    paper-preset CPU step) where this PyTorch has it for the parameters' device (CPU from
    2.4, CUDA from 2.0), else the default form. Same update either way."""
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, **kwargs)


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
