"""The dispatcher's window reads on SQLite (``store.shared.window`` has the cursors and
statements): the next due dispatches past a keyset cursor in ready order, the next ones
by not-before, and the newest seq. Each rank's page is a range of the partial index
``dispatches_ready``; ``INDEXED BY`` pins it (the planner would otherwise take the
equality on ``dispatches_status`` and sort every queued row), and makes the statement
fail, not slow down, if the index ever went away."""

from __future__ import annotations

import sqlite3

from shepherd.store.models import Dispatch
from shepherd.store.shared.queries import DISPATCH_COLUMNS, dispatch_from_row, qmark
from shepherd.store.shared.window import (
    RANKS,
    Lane,
    LaterKey,
    ReadyKey,
    later_sql,
    merge_later,
    ready_args,
    ready_pages,
    ready_sql,
)

__all__ = ["newest_seq", "queued_later", "queued_ready"]

_SOURCE = "dispatches INDEXED BY dispatches_ready"
_READY = {
    (b, laned): ready_sql(DISPATCH_COLUMNS, qmark, b, _SOURCE, laned)
    for b in (False, True)
    for laned in (False, True)
}
_LATER = later_sql(DISPATCH_COLUMNS, qmark, _SOURCE)


def queued_ready(
    conn: sqlite3.Connection,
    after: ReadyKey | None,
    *,
    now: float,
    limit: int,
    lane: Lane | None = None,
) -> list[Dispatch]:
    """Up to ``limit`` due queued dispatches past ``after`` (None: from the head), by
    (priority rank, not_before, seq); with ``lane``, that lane's only."""
    out: list[Dispatch] = []
    for rank, bounded, laned in ready_pages(after, lane):
        if len(out) >= limit:
            break
        cursor = (after[1], after[2]) if after is not None and bounded else ()
        args = ready_args(rank, now, cursor, lane if laned else None, limit - len(out))
        out += map(dispatch_from_row, conn.execute(_READY[bounded, laned], args))
    return out


def queued_later(conn: sqlite3.Connection, after: LaterKey, *, limit: int) -> list[Dispatch]:
    """Up to ``limit`` queued dispatches past ``after`` by (not_before, seq)."""
    pages = [
        [dispatch_from_row(r) for r in conn.execute(_LATER, (rank, *after, limit))]
        for rank in RANKS
    ]
    return merge_later(pages, lambda d: (d.not_before, d.seq), limit)


def newest_seq(conn: sqlite3.Connection) -> int:
    """The highest seq any dispatch took (0: none): the unique index's last entry."""
    row = conn.execute("SELECT max(seq) FROM dispatches").fetchone()
    return int(row[0] or 0)
