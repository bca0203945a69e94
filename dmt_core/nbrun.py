"""Executing notebooks from Python: papermill with local IPC kernels.

Used by ``notebooks/run_series.py`` (the series) and :mod:`dmt_core.ablation` (one
training notebook per variant). Needs the ``notebooks`` extra (papermill, nbclient).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

TIMEOUT = 3600  # seconds per cell: a CPU training cell runs for minutes


_SOCKETS: list[str] = []


def _socket_dir() -> str:
    """One private temporary folder per process for the kernels' sockets."""
    if not _SOCKETS:
        _SOCKETS.append(tempfile.mkdtemp(prefix="dmt-kernels-"))
    return _SOCKETS[0]


def ipc_kernel_manager() -> type:
    """A kernel manager whose kernels talk over IPC sockets (local files) instead of TCP:
    the same local kernel, without ipykernel's warning about unencrypted TCP.

    The sockets live under an absolute path in the temporary folder: a relative one
    would be resolved against the kernel's working folder by the kernel and against
    this process's by the client, which then never finds the kernel.
    """
    from jupyter_client.manager import KernelManager
    from traitlets import default

    class IPCKernelManager(KernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:
            return os.path.join(_socket_dir(), "kernel")

    return IPCKernelManager


def declared_parameters(path: str | os.PathLike) -> set[str]:
    """Names assigned in the notebook's ``parameters`` cell."""
    import papermill as pm

    return set(pm.inspect_notebook(str(path)))


def run_notebook(
    path: str | os.PathLike,
    out: str | os.PathLike,
    parameters: dict[str, Any],
    *,
    cwd: str | os.PathLike | None = None,
    timeout: int = TIMEOUT,
) -> tuple[str, str | None, float]:
    """Execute ``path`` into ``out`` with ``parameters`` injected.

    Returns ``(status, error, seconds)``: ``("ok", None, s)`` or ``("failed", "Name: text",
    s)`` when a cell raised (the partly executed notebook is kept at ``out``).

    Raises:
        ValueError: a parameter the notebook does not declare (a typo would be ignored
            by papermill and the run would silently use the default).
    """
    import papermill as pm

    unknown = sorted(set(parameters) - declared_parameters(path))
    if unknown:
        raise ValueError(f"{path}: no parameter(s) {unknown} in its parameters cell")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(out),
            parameters=parameters,
            kernel_name="python3",
            kernel_manager_class=ipc_kernel_manager(),
            cwd=str(cwd or Path(path).resolve().parent),
            progress_bar=False,
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as e:
        return "failed", f"{e.ename}: {e.evalue}", time.perf_counter() - t0
    return "ok", None, time.perf_counter() - t0
