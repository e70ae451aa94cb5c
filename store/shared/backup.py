"""Engine-neutral pieces of backups, shared by ``store.sqlite.backup`` and
``store.postgres.backup``: checking the target's directory before anything is written,
the temporary file beside the target, and putting the finished copy in place
atomically (fsync the file, rename it over the target, fsync the directory), so the
target is either the old file or the whole new copy, never a part.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from shepherd.store.errors import StoreError, os_error

__all__ = ["Progress", "fsync_and_rename", "temp_beside", "writable_target"]

Progress = Callable[[int, int], None]  # (done, in all)


def writable_target(target: str) -> Path:
    """``target``'s directory, or a ``ReadOnly`` / ``StoreError`` naming the path when
    it does not exist or is not a directory (before anything is written)."""
    parent = Path(target).resolve().parent
    if not parent.exists():
        raise os_error(FileNotFoundError(2, "no such directory", str(parent)), target)
    if not parent.is_dir():
        raise os_error(NotADirectoryError(20, "not a directory", str(parent)), target)
    if Path(target).is_dir():
        raise StoreError(f"{target}: is a directory, not a file")
    return parent


def temp_beside(target: str) -> str:
    """The temporary file a copy is written to before it is renamed over ``target``."""
    p = Path(target)
    return str(p.with_name(f".{p.name}.partial-{os.getpid()}"))


def fsync_and_rename(tmp: str, target: str, parent: Path) -> None:
    """Make ``tmp`` durable, rename it over ``target``, make the rename durable."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dfd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
