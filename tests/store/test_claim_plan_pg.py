"""The claim and outcome statements on PostgreSQL (store/postgres/claims_fast.py and
claims.py) lock their rows through the primary key even in a generic plan made while
the tables were small and never analyzed: the writer's prepared statements are planned
once, in a node's first passes, and kept; a scan of the whole table cached then would
be paid by every later pass, growing with the table."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
import pytest

from shepherd.store.postgres import claims, claims_fast
from shepherd.store.postgres.engine import PgStore

pytestmark = pytest.mark.anyio

NOW = time.time()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _seq_scans(node: dict[str, Any]) -> list[str]:
    out = [str(node.get("Relation Name"))] if node.get("Node Type") == "Seq Scan" else []
    for child in node.get("Plans", []):
        out += _seq_scans(child)
    return out


async def _small_tables(conn: asyncpg.Connection) -> None:
    """A node's first passes: a few hundred rows, never analyzed."""
    await conn.execute(
        "INSERT INTO dispatches (job_id, job_name, kind, status, priority, not_before,"
        " max_attempts, created_at, updated_at, idempotency_key)"
        " SELECT 1, 'noop', 'enqueue', 'done', 0, $1, 3, $1, $1, 'sys:lineage:' || i"
        " FROM generate_series(1, 300) AS i",
        NOW,
    )
    await conn.execute(
        "INSERT INTO runs (dispatch_id, job_id, job_name, attempt, status, started_at,"
        " finished_at, heartbeat_at, idempotency_key, instance)"
        " SELECT i, 1, 'noop', 1, 'ok', $1, $1, $1, 'sys:lineage:' || i, 'node-1'"
        " FROM generate_series(1, 300) AS i",
        NOW,
    )


# each statement and how many parameters it takes (a generic plan does not look at
# their values: each is NULL here)
STATEMENTS: dict[str, tuple[str, int]] = {
    "claim": (claims_fast._CLAIM, 8),
    "finish": (claims_fast._FINISH, 20),
    "lock_dispatches": (claims._LOCK, 1),
    "lock_runs": (claims._LOCK_RUNS, 1),
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_scans_no_table_whole_in_a_generic_plan_of_small_tables(
    pg_url: str, name: str
) -> None:
    sql, params = STATEMENTS[name]
    store = await PgStore.open(pg_url)
    try:

        async def explain(conn: asyncpg.Connection) -> Any:
            await _small_tables(conn)
            await conn.execute("PREPARE under_test AS " + sql)
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            nulls = ", ".join(["NULL"] * params)
            try:
                return await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE under_test({nulls})")
            finally:
                await conn.execute("RESET plan_cache_mode; DEALLOCATE under_test")

        plan = json.loads(await store.read(explain))[0]["Plan"]
    finally:
        await store.close()
    scans = [t for t in _seq_scans(plan) if t in ("runs", "dispatches")]
    assert scans == [], f"{name} scans {scans} whole"
