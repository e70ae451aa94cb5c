"""The dispatcher's reload query (``queries.queued_since``) is served by an index.

It runs on every wake-up from another process, so a plan that scans and sorts every
queued row makes cross-process enqueue cost grow with wake-ups x queue length. The SQL
is captured as the query function really runs it (sqlite3's trace callback), then
planned with ``EXPLAIN QUERY PLAN`` on the same file, with and without ``ANALYZE``.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.runtime.jobs import new_dispatch
from shepherd.store.models import EnqueueRequest
from shepherd.store.ops import InsertDispatches
from shepherd.store.sqlite import SqliteStore, queries

pytestmark = pytest.mark.anyio

QUEUED = 2_000  # per origin


async def noop(ctx: RunContext) -> None:
    return None


@pytest.fixture
async def populated(db_path: str) -> str:
    """Finished dispatches (a runtime ran them), then queued ones of two origins."""
    async with Runtime.open(Config(database=db_path), targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        for dispatch_id in [await rt.enqueue("noop") for _ in range(50)]:
            assert (await rt.wait(dispatch_id, timeout=10)).status == "done"
    store = await SqliteStore.open(db_path, create=False)
    try:
        row = await store.read(queries.get_job, "noop")
        assert row is not None
        now = time.time()
        for origin in ("other", "mine"):
            rows = [new_dispatch(row, EnqueueRequest(job="noop"), now, where="t")] * QUEUED
            await store.apply_one(InsertDispatches(rows, origin, now))
    finally:
        await store.close()
    return db_path


def traced(conn: sqlite3.Connection, after_seq: int, exclude: str | None) -> tuple[list[str], int]:
    """The statements ``queued_since`` ran, and how many rows it returned."""
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        rows = queries.queued_since(conn, after_seq, exclude_origin=exclude)
    finally:
        conn.set_trace_callback(None)
    return seen, len(rows)


@pytest.mark.parametrize("analyze", [False, True], ids=["no-stats", "analyzed"])
@pytest.mark.parametrize("exclude", [None, "mine"], ids=["all", "exclude-own"])
async def test_reload_uses_the_queued_index_without_a_sort(
    populated: str, analyze: bool, exclude: str | None
) -> None:
    conn = sqlite3.connect(populated)
    try:
        if analyze:
            conn.execute("ANALYZE")
        statements, _ = traced(conn, 0, exclude)
        [sql] = [s for s in statements if "FROM dispatches" in s]
        plan = [str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    finally:
        conn.close()
    text = " | ".join(plan)
    assert "USE TEMP B-TREE" not in text, text
    assert any("USING INDEX dispatches_queued (seq>?)" in p for p in plan), text


async def test_reload_returns_queued_rows_after_seq_in_order(populated: str) -> None:
    conn = sqlite3.connect(populated)
    try:
        everything = queries.queued_since(conn, 0)
        assert len(everything) == 2 * QUEUED
        seqs = [d.seq for d in everything]
        assert seqs == sorted(seqs)
        middle = seqs[QUEUED // 2]
        newer = queries.queued_since(conn, middle, exclude_origin="mine")
        others = dict(conn.execute("SELECT id, origin FROM dispatches"))
        assert [d.seq for d in newer] == [
            d.seq for d in everything if d.seq > middle and others[d.id] != "mine"
        ]
        assert len(newer) == QUEUED - QUEUED // 2 - 1
        assert all(d.status == "queued" for d in newer)
    finally:
        conn.close()
