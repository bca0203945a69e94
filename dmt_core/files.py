"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

    with atomic_write(path) as f:       # binary; atomic_write(path, "w") for text
        f.write(data)

The data go to a temporary file in the same folder, which is renamed over ``path``
when the block ends without an error (and removed otherwise). The file gets the usual
permissions (0666 minus the umask), not the 0600 of a bare temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", fsync: bool = False
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; rename it to ``path`` on success.

    Args:
        path: the final file; its folder is created.
        mode: ``"wb"`` or ``"w"``.
        fsync: flush the data to disk before the rename (checkpoints: survive a crash).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
