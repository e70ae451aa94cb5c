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
0, and when another connection holds the lock (another process writing the file) the
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

__all__ = ["INLINE_ROWS", "apply_here", "small"]

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


def apply_here(conn: sqlite3.Connection, ops: Sequence[WriteOp], busy_ms: int) -> list[Any] | None:
    """``apply_batch`` on this thread without waiting for the write lock; None when it
    is held elsewhere (nothing was written). ``busy_ms``: the busy timeout restored on
    the way out, for the hops that follow."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        return apply_batch(conn, ops)
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and not conn.in_transaction:
            return None
        raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
