"""``queue_depth`` on PostgreSQL: the active dispatches by state, priority and job, read
from the partial index ``dispatches_active`` alone (EXPLAIN: an index-only scan once the
table is vacuumed, never a sequential scan), so the finished rows are not visited."""

from __future__ import annotations

from collections import Counter

import asyncpg
import pytest

from shepherd.store.postgres.engine import PgStore
from shepherd.store.postgres.metrics import SQL

pytestmark = pytest.mark.anyio


async def _plan(conn: asyncpg.Connection) -> str:
    return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + SQL))


async def test_counts_active_dispatches_from_their_index_alone(pg_url: str) -> None:
    store = await PgStore.open(pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(  # 20,000 dispatches, 1 in 1,000 still active
            "INSERT INTO dispatches (job_id, job_name, kind, status, priority, not_before,"
            " max_attempts, created_at, updated_at)"
            " SELECT 1, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'enqueue',"
            " CASE WHEN g % 1000 = 0 THEN 'queued' WHEN g % 1000 = 500 THEN 'running'"
            " ELSE 'done' END, g % 3, 0, 3, 0, 0 FROM generate_series(1, 20000) g"
        )
        active = Counter(
            ("queued" if g % 1000 == 0 else "running", g % 3, "a" if g % 2 == 0 else "b")
            for g in range(1, 20001)
            if g % 1000 in (0, 500)
        )
        assert sorted(await store.queue_depth()) == sorted((*k, n) for k, n in active.items())
        before = await _plan(conn)
        assert "dispatches_active" in before and "Seq Scan" not in before, before
        await conn.execute("VACUUM ANALYZE dispatches")
        after = await _plan(conn)
        assert "Index Only Scan using dispatches_active" in after and "Seq Scan" not in after
    finally:
        await conn.close()
        await store.close()
