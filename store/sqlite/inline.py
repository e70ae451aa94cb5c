"""Small groups of writes commit on the event loop's own thread, without a thread hop.

A hop to the writer's thread and back is two cross-thread wake-ups: 0.17 to 0.19 ms at
the median on the 2-core VM the benchmarks run on, and more under load (bench/README,
"Small commits without a thread hop"), against 0.07 ms for the commit of one recorded
process group and 0.45 ms for one outcome with the next claim. At low load a commit is
a run's pickup, or the gap between one shell run of a slot and the next, so the hop was
most of both. A group this module lets through (``small``) runs ``apply_batch`` right
where the store writer awaits it; a larger group, any other kind of op, and every
commit under ``synchronous = FULL`` (an fsync each) still go to the writer's thread,
where SQLite's work overlaps with the loop's.

The write lock is never waited for here: the attempt runs with SQLite's busy timeout at
0 (set once for a run of inline commits, and back to the configured one before the
next hop to the writer's thread: two statements fewer per commit), and when another
connection holds the lock (another process writing the file) the
transaction has written nothing and the engine takes the group to the thread, which
waits the configured busy timeout as before (``apply_here`` returns None).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from shepherd.store.ops import (
    CancelDispatch,
    ClaimRuns,
    FinishRuns,
    Heartbeats,
    InsertDispatches,
    RecordProcess,
    SaveStatus,
    SettleQueued,
    WriteOp,
)
from shepherd.store.sqlite.batch import apply_batch

__all__ = ["INLINE_ROWS", "apply_here", "no_wait", "small", "wait_again"]

INLINE_ROWS = 8  # rows a group may touch and still commit on the loop's thread

# the ops of the dispatch path, by the field that holds their rows (None: one row)
_ROWS: dict[type, str | None] = {
    InsertDispatches: "rows",
    ClaimRuns: "claims",
    FinishRuns: "finals",
    SettleQueued: "items",
    Heartbeats: "items",
    RecordProcess: None,
    CancelDispatch: None,
    SaveStatus: None,
}


def small(ops: Sequence[WriteOp]) -> bool:
    """Whether ``ops`` are all of the dispatch path and touch at most ``INLINE_ROWS``
    rows between them."""
    rows = 0
    for op in ops:
        try:
            field = _ROWS[type(op)]
        except KeyError:
            return False
        rows += 1 if field is None else len(getattr(op, field))
        if rows > INLINE_ROWS:
            return False
    return True


def apply_here(conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[Any] | None:
    """``apply_batch`` on this thread without waiting for the write lock; None when it
    is held elsewhere (nothing was written). The connection's busy timeout must be 0
    (``no_wait``); the engine sets it back before the next hop (``wait_again``)."""
    try:
        return apply_batch(conn, ops)
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and not conn.in_transaction:
            return None
        raise


def no_wait(conn: sqlite3.Connection) -> None:
    """The busy timeout ``apply_here`` needs: never wait for the write lock."""
    conn.execute("PRAGMA busy_timeout = 0")


def wait_again(conn: sqlite3.Connection, busy_ms: int) -> None:
    """The configured busy timeout again, for the writer's thread."""
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
