"""The metrics endpoint's store read on PostgreSQL: active dispatches counted by state,
priority and job, as ``store.sqlite.metrics``.

It reads the partial index ``dispatches_active`` (status, priority, job_name; queued,
held and running rows only; ``store.postgres.schema``) and nothing else, an index-only
scan: finished dispatches, however many, have no entry in it, so the cost follows the
active rows. The plan is asserted in tests/store/test_queue_depth_pg.py."""

from __future__ import annotations

import asyncpg

__all__ = ["SQL", "queue_depth"]

SQL = (
    "SELECT status, priority, job_name, COUNT(*) FROM dispatches"
    " WHERE status IN ('queued', 'awaiting_approval', 'running')"
    " GROUP BY status, priority, job_name"
)


async def queue_depth(conn: asyncpg.Connection) -> list[tuple[str, int, str, int]]:
    """``(state, priority rank, job, count)`` per group of active dispatches."""
    return [(str(s), int(p), str(j), int(n)) for s, p, j, n in await conn.fetch(SQL)]
