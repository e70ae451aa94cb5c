"""The dashboard's queries on PostgreSQL (store/postgres/dashboard.py) use indexes:
every statement they run, with the arguments they run it with, is explained on a
filled, analyzed schema, and none reads the runs or dispatches table whole (a
sequential scan only under a LIMIT); keyset pages continue to the end."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from shepherd.store.postgres import dashboard as q
from shepherd.store.postgres.engine import PgStore

pytestmark = pytest.mark.anyio

BIG = ("runs", "dispatches")
NOW = time.time()
RUNS, DISPATCHES, JOBS = 40_000, 20_000, 20


class Recorder:
    """A connection that remembers every statement run through it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.seen.append((sql, args))
        return await self.conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.seen.append((sql, args))
        return await self.conn.fetchval(sql, *args)


async def _fill(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO dispatches (job_id, job_name, kind, status, priority, not_before,"
        " max_attempts, created_at, updated_at, agent)"
        " SELECT 1 + i % $2, 'j' || (1 + i % $2), 'enqueue',"
        " (ARRAY['done','done','done','dead','queued','running'])[1 + i % 6], i % 5, 0, 3,"
        " $3 - ($1 - i), $3 - ($1 - i), CASE WHEN i % 7 = 0 THEN 'a' END"
        " FROM generate_series(1, $1) AS i",
        DISPATCHES,
        JOBS,
        NOW,
    )
    await conn.execute(
        "INSERT INTO runs (dispatch_id, job_id, job_name, attempt, status, started_at,"
        " finished_at, agent)"
        " SELECT 1 + i % $4, 1 + i % $2, 'j' || (1 + i % $2), 1,"
        " (ARRAY['ok','ok','error','timeout','skipped','running'])[1 + i % 6],"
        " $3 - ($1 - i) * 2, CASE WHEN i % 6 = 5 THEN NULL ELSE $3 - ($1 - i) * 2 + 1 END,"
        " CASE WHEN i % 11 = 0 THEN 'agent1' END"
        " FROM generate_series(1, $1) AS i",
        RUNS,
        JOBS,
        NOW,
        DISPATCHES,
    )
    await conn.execute("ANALYZE dispatches; ANALYZE runs")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def store(pg_database: str) -> AsyncIterator[PgStore]:
    from tests.pg_helpers import new_schema_url

    s = await PgStore.open(new_schema_url(pg_database))
    try:
        await s.read(_fill)
        yield s
    finally:
        await s.close()


Call = Callable[[Any], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "overview": lambda c: q.overview(c, NOW),
    "counts": q.capped_counts,
    "by_priority": q.queued_by_priority,
    "hourly": lambda c: q.hourly_outcomes(c, NOW),
    "running": q.running_runs,
    "job_success": lambda c: q.job_success(c, [1, 2, 3]),
    "dispatches": q.dispatch_page,
    "dispatches_filtered": lambda c: q.dispatch_page(
        c, status="queued", job_id=2, priority="high", agent="a", since=NOW - 3600, before=400
    ),
    "dispatches_state": lambda c: q.dispatch_page(c, status="dead"),
    "runs": q.run_page,
    "runs_filtered": lambda c: q.run_page(
        c, status="error", job_id=3, agent="agent1", since=NOW - 86400, until=NOW, before=4000
    ),
    "runs_by_job": lambda c: q.run_page(c, job_id=4),
    "attempts": lambda c: q.run_attempts(c, 10),
    "skipped": q.skipped_slots,
}


def _seq_scans(node: dict[str, Any], limited: bool = False) -> list[tuple[str, bool]]:
    """(relation, under a Limit) of every sequential scan in a JSON plan node."""
    limited = limited or node.get("Node Type") == "Limit"
    out = []
    if node.get("Node Type") == "Seq Scan":
        out.append((str(node.get("Relation Name")), limited))
    for child in node.get("Plans", []):
        out += _seq_scans(child, limited)
    return out


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_no_dashboard_query_scans_a_big_table(store: PgStore, name: str) -> None:
    async def explain(conn: asyncpg.Connection) -> list[tuple[str, Any]]:
        rec = Recorder(conn)
        await CALLS[name](rec)
        assert rec.seen, "the call ran no statement"
        plans = []
        for sql, args in rec.seen:
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
            plans.append((sql, json.loads(raw)[0]["Plan"]))
        return plans

    for sql, plan in await store.read(explain):
        for relation, limited in _seq_scans(plan):
            if relation in BIG:
                assert limited, f"{name}: full scan of {relation}\n{sql}\n{plan}"


async def test_a_filtered_page_is_bounded_and_continues(store: PgStore) -> None:
    """A filter no row matches answers an empty page with a cursor below its window,
    and following the cursors reaches the end (keyset, no OFFSET)."""
    page = await store.read(q.run_page, agent="nobody", limit=10)
    assert page.rows == [] and page.before == max(0, RUNS + 1 - q.WINDOW)
    seen: set[int] = set()
    before = None
    while True:
        p = await store.read(q.run_page, status="error", limit=500, before=before)
        ids = [r.id for r in p.rows]
        assert ids == sorted(ids, reverse=True) and not seen & set(ids)
        seen |= set(ids)
        if not p.before:
            break
        before = p.before

    async def errors(conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT COUNT(*) FROM runs WHERE status = 'error'"))

    assert len(seen) == await store.read(errors)
