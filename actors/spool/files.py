"""The spool directory: its layout, atomic writes, and the sync file work of one
ingest pass (listing and reading, removing what was committed, moving what was
rejected), which the actor runs in a worker thread.

    <dir>/<id>.json                       pending (OpenClaw's events directory)
    <dir>/<name>.tmp.<random>             a writer's file before its rename: never read
    <dir>/rejected/<name>                 a rejected file, moved as it was
    <dir>/rejected/<name>.error.json      beside it: {file, error, field, at, atMs}
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from shepherd.store.errors import ConfigError, os_error

__all__ = [
    "ERROR_SUFFIX",
    "MAX_FILE_BYTES",
    "REJECTED_DIR",
    "PendingFile",
    "error_name",
    "is_ignored",
    "is_pending_name",
    "is_rejected_name",
    "iso_ms",
    "move_rejected",
    "prepare_dirs",
    "read_pending",
    "remove_committed",
    "spool_counts",
    "write_error",
    "write_event",
    "write_file",
]

REJECTED_DIR = "rejected"
ERROR_SUFFIX = ".error.json"
MAX_FILE_BYTES = 1 << 20  # a larger file is rejected unread


# -- names ------------------------------------------------------------------------------


def is_ignored(name: str) -> bool:
    """A writer's temp file or a dot-file: never read, never moved."""
    return ".tmp" in name or name.startswith(".")


def is_pending_name(name: str) -> bool:
    return name.endswith(".json") and not is_ignored(name)


def is_rejected_name(name: str) -> bool:
    return not is_ignored(name) and not name.endswith(ERROR_SUFFIX)


def error_name(name: str) -> str:
    return name + ERROR_SUFFIX


def iso_ms(epoch: float) -> str:
    """``2026-01-31T09:00:00.000Z`` (as JavaScript's ``toISOString``)."""
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def write_file(directory: str | os.PathLike[str], name: str, data: bytes) -> Path:
    """Write ``data`` as ``directory/name`` atomically: a ``<name>.tmp.<random>`` file,
    flushed to disk, renamed over ``name``. Raises ``OSError``."""
    target = Path(directory) / name
    tmp = target.with_name(f"{name}.tmp.{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_event(directory: str | os.PathLike[str], event: Mapping[str, Any]) -> Path:
    """Write an event as ``<id>.json`` (OpenClaw's) atomically; returns its path."""
    return write_file(directory, f"{event['id']}.json", msgspec.json.encode(dict(event)))


def write_error(
    rejected: str | os.PathLike[str], name: str, error: ConfigError, now: float
) -> Path:
    """``<name>.error.json`` in the rejected directory: the problem, its field, the time."""
    info = {"file": name, "error": str(error), "field": error.field, "at": iso_ms(now)}
    return write_file(
        rejected, error_name(name), msgspec.json.encode({**info, "atMs": int(now * 1000)})
    )


# -- one pass --------------------------------------------------------------------------


class PendingFile(NamedTuple):
    name: str
    data: bytes
    mtime: float
    stamp: tuple[int, int, int]  # (inode, size, mtime ns): unchanged since read?
    error: str | None = None  # could not be read


def prepare_dirs(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(pending, rejected), created when missing; raises ``ConfigError`` naming
    ``spool.dir`` (not a directory) or the ``StoreError`` of the ``OSError``."""
    pending = Path(directory)
    rejected = pending / REJECTED_DIR
    what = f"spool directory {str(pending)!r}"
    try:
        rejected.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what}: not a directory", field="spool.dir") from None
    except OSError as exc:
        raise os_error(exc, what) from None
    for where in (pending, rejected):
        if not where.is_dir():
            raise ConfigError(f"{where}: not a directory", field="spool.dir")
        if not os.access(where, os.R_OK | os.W_OK | os.X_OK):
            raise os_error(PermissionError(13, "cannot read and write it"), str(where))
    return pending, rejected


def spool_counts(directory: str | os.PathLike[str]) -> dict[str, int]:
    """Pending and rejected files in a spool directory (what ``status`` shows)."""
    pending = Path(directory)
    out = {"pending": 0, "rejected": 0}
    for key, where, keep in (
        ("pending", pending, is_pending_name),
        ("rejected", pending / REJECTED_DIR, is_rejected_name),
    ):
        try:
            out[key] = sum(1 for e in os.scandir(where) if e.is_file() and keep(e.name))
        except FileNotFoundError:
            pass
    return out


def read_pending(pending: Path, limit: int) -> list[PendingFile]:
    out: list[PendingFile] = []
    with os.scandir(pending) as entries:
        for entry in entries:
            if len(out) >= limit:
                break
            if is_ignored(entry.name) or not entry.is_file():
                continue
            try:
                with open(entry.path, "rb") as f:
                    st = os.fstat(f.fileno())
                    data = f.read(MAX_FILE_BYTES + 1)
            except FileNotFoundError:
                continue  # taken away meanwhile
            except OSError as exc:
                why = f"cannot read: {exc.strerror}"
                out.append(PendingFile(entry.name, b"", 0.0, (0, 0, 0), why))
                continue
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            out.append(PendingFile(entry.name, data, st.st_mtime, stamp))
    return out


def remove_committed(pending: Path, files: list[PendingFile]) -> int:
    """Remove the committed files that are still as they were read; how many were."""
    removed = 0
    for f in files:
        path = pending / f.name
        try:
            st = os.stat(path)
            if (st.st_ino, st.st_size, st.st_mtime_ns) != f.stamp:
                continue  # rewritten since: read again on the next pass
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise os_error(exc, f"spool file {str(path)!r}") from None
    return removed


def move_rejected(
    pending: Path, rejected: Path, items: list[tuple[PendingFile, ConfigError]], now: float
) -> None:
    for f, error in items:
        try:
            write_error(rejected, f.name, error, now)
            os.replace(pending / f.name, rejected / f.name)
        except FileNotFoundError:
            (rejected / error_name(f.name)).unlink(missing_ok=True)
        except OSError as exc:
            raise os_error(exc, f"spool directory {str(rejected)!r}") from None
