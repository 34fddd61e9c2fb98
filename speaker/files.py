"""Writing a file so that a reader sees the old one or the whole new one."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(target: Path, text: str, *, mode: int | None = None) -> None:
    """``text`` to ``target`` via a temporary file in its directory, fsynced and
    renamed over it, then the directory fsynced: after a crash the file is the old
    one or the whole new one, never a part. ``mode``: the file's mode; None: an
    existing file's own, else 0600 (it may hold a password).

    Raises:
        OSError: the directory is missing or not writable, the disk is full...
    """
    if mode is None:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o600
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
