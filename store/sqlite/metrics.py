"""The metrics endpoint's store read: active dispatches counted by state, priority and
job, over the ``dispatches_status`` index (only the queued, held and running rows are
visited; finished ones, however many, are not)."""

from __future__ import annotations

import sqlite3

__all__ = ["ACTIVE", "queue_depth"]

ACTIVE = ("queued", "awaiting_approval", "running")

_SQL = (
    "SELECT status, priority, job_name, COUNT(*) FROM dispatches INDEXED BY dispatches_status"
    " WHERE status IN ('queued', 'awaiting_approval', 'running')"
    " GROUP BY status, priority, job_name"
)


def queue_depth(conn: sqlite3.Connection) -> list[tuple[str, int, str, int]]:
    """``(state, priority rank, job, count)`` per group of active dispatches."""
    return [(str(s), int(p), str(j), int(n)) for s, p, j, n in conn.execute(_SQL)]
