"""The one error hierarchy of shepherd.

It lives in ``store/`` because imports point runtime → actors → store, so every layer
can raise and catch the same classes; ``runtime`` re-exports them for users.

    ShepherdError
    ├── ConfigError          bad config, job spec, CLI flag or spool file; names the field
    ├── StoreError           a database fault, translated at the store's edge by its
    │   │                    SQLite result code (``store.sqlite.codes.translate``); also the
    │   │                    result of one failed op in a group commit
    │   ├── DatabaseLocked   SQLITE_BUSY / LOCKED: another writer holds the lock
    │   │                    past busy_timeout
    │   ├── DatabaseCorrupt  SQLITE_CORRUPT / NOTADB: not a shepherd database, or damaged
    │   ├── DiskFull         SQLITE_FULL
    │   ├── ReadOnly         SQLITE_READONLY / CANTOPEN / PERM: the file or its
    │   │                    directory cannot be written
    │   └── NotFound         no row with that id / name
    ├── Conflict             someone else changed the row first (an approval already
    │                        resolved: "approval 7 is already approved by alice")
    ├── MailboxFull          tell() on a full bounded mailbox
    ├── MailboxClosed        tell() / send() after the receiver has gone
    ├── SupervisorEscalation restart intensity exceeded; names the actor and the cause
    └── JobSignal            raised by job code to steer its dispatch
        ├── RetryAfter       retry after ``seconds`` (counts as an attempt)
        ├── Discard          do not retry; dead-letter now with ``reason``
        └── Deferred         a dependency (the gateway) is down: requeue after
                             ``seconds`` WITHOUT spending an attempt; feeds the
                             executor's circuit breaker
"""

from __future__ import annotations

import errno
from typing import Any

__all__ = [
    "ConfigError",
    "Conflict",
    "DatabaseCorrupt",
    "DatabaseLocked",
    "Deferred",
    "Discard",
    "DiskFull",
    "JobSignal",
    "MailboxClosed",
    "MailboxFull",
    "NotFound",
    "ReadOnly",
    "RetryAfter",
    "ShepherdError",
    "StoreError",
    "SupervisorEscalation",
    "leaves",
    "os_error",
]


class ShepherdError(Exception):
    """Base class of every error shepherd raises on purpose."""


class ConfigError(ShepherdError, ValueError):
    """Invalid input. ``field`` names the offending field (dotted path) when known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class StoreError(ShepherdError):
    """A database fault, already translated from the driver's exception."""


class DatabaseLocked(StoreError):
    pass


class DatabaseCorrupt(StoreError):
    pass


class DiskFull(StoreError):
    pass


class ReadOnly(StoreError):
    pass


class NotFound(StoreError, LookupError):
    pass


class Conflict(ShepherdError):
    """A conditional change lost to an earlier one (two approvers, one approval)."""


class MailboxFull(ShepherdError):
    pass


class MailboxClosed(ShepherdError):
    pass


class DatabaseReplaced(StoreError):
    """The database file (or its WAL) was removed or replaced while the store had it
    open: commits go to a file nobody else sees, so the runtime stops."""


class SupervisorEscalation(ShepherdError):
    """A supervisor gave up: its children crashed more often than its intensity allows."""

    def __init__(self, supervisor: str, child: str, cause: BaseException | None) -> None:
        self.supervisor = supervisor
        self.child = child
        self.cause = cause
        what = f"{type(cause).__name__}: {cause}" if cause is not None else "unknown"
        super().__init__(
            f"supervisor {supervisor!r} exceeded its restart intensity; "
            f"last crash in {child!r}: {what}"
        )


class JobSignal(ShepherdError):
    """Base for exceptions that job code raises to steer what happens to its dispatch."""


class RetryAfter(JobSignal):
    def __init__(self, seconds: float, reason: str = "") -> None:
        if seconds < 0:
            raise ValueError("RetryAfter seconds must be >= 0")
        self.seconds = float(seconds)
        self.reason = reason
        super().__init__(reason or f"retry after {seconds:g}s")


class Discard(JobSignal):
    def __init__(self, reason: str = "discarded") -> None:
        self.reason = reason
        super().__init__(reason)


class Deferred(JobSignal):
    def __init__(self, seconds: float = 60.0, reason: str = "dependency unavailable") -> None:
        self.seconds = float(seconds)
        self.reason = reason
        super().__init__(f"{reason} -- deferred {seconds:g}s")


def os_error(exc: OSError, what: str) -> StoreError:
    """An OSError on a file the runtime keeps beside the database (lock file, wake
    socket, data directory) as the store error it means, by errno."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"{what}: disk is full ({exc})")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnly(f"{what}: cannot write beside the database ({exc})")
    return StoreError(f"{what}: {exc}")


def leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions of ``group`` and of the groups nested in it, flattened."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
