"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

    with atomic_write(path) as f:       # binary; atomic_write(path, "w") for text
        f.write(data)

The data go to a temporary file in the same folder, which is renamed over ``path``
when the block ends without an error (and removed otherwise). The file gets the usual
permissions (0666 minus the umask), not the 0600 of a bare temporary file.

A folder that one process at a time may write (a training run) is held with

    with lock_directory(run, "dmt train"):   # InUseError if another process holds it
        ...

an OS file lock (``flock``) on ``run/.lock``, which the OS releases when the process
ends, however it ends: a killed run leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:  # name the file meant, not the temporary one
        raise _renamed(e, path) from e
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _renamed(e, path) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: the suffix of :func:`atomic_write`'s temporary files (``.<name>.<random>.tmp``)
TEMP_SUFFIX = ".tmp"


def _renamed(err: OSError, path: Path) -> OSError:
    """The same kind of OSError, naming ``path`` instead of a temporary file."""
    if err.errno is None:
        return err
    return type(err)(err.errno, err.strerror, str(path))


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left in ``folder`` (not below it).

    A process killed in the middle of an atomic write (``kill -9``, a power cut) leaves
    its ``.<name>.<random>.tmp``; call this only while no other process writes there
    (under :func:`lock_directory`). Returns the removed files.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# ------------------------------------------------------------------------ folder locks

#: the lock file :func:`lock_directory` creates in the folder it locks
LOCK_NAME = ".lock"


class InUseError(RuntimeError):
    """Another process holds the folder (:func:`lock_directory`); ``holder`` says who."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def read_lock_holder(folder: str | os.PathLike) -> dict[str, Any]:
    """What the lock file of ``folder`` says about its holder (``{}`` when unreadable)."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (no details in the lock file)"
    text = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("purpose"):
        text = f"{holder['purpose']} ({text})"
    if holder.get("started"):
        text += f", started {holder['started']}"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text


@contextlib.contextmanager
def lock_directory(
    folder: str | os.PathLike, purpose: str = "", command: str = ""
) -> Iterator[Path]:
    """Hold ``folder`` (created) for this process until the block ends.

    The lock is an exclusive ``flock`` on ``folder/.lock``, taken without waiting; the
    file records the holder (pid, host, start time, ``purpose``, ``command``) for the
    message of the next process that tries. The OS drops the lock when the process
    dies, so a killed process leaves no stale lock (at most the file, which the next
    holder reuses). The file is removed when the block ends.

    Raises:
        InUseError: another process holds the folder; the message names it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = read_lock_holder(folder)
            raise InUseError(
                f"{folder} is in use by {_describe_holder(holder)}; wait until it ends or "
                "choose another folder",
                holder,
            ) from None
        # the previous holder may have removed the file between our open and flock
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "purpose": purpose,
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the unlock: a waiter then sees a new file, or none
        os.close(fd)
