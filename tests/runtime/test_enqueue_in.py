"""Transactional enqueue on PostgreSQL (``shepherd.runtime.enqueue_in``) and wake-ups
from commits the runtime did not make, through an embedded runtime:

- a dispatch enqueued in the application's transaction runs once that commits, and
  its row carries the application's origin (not the runtime's instance);
- one rolled back with the application's data never exists and never runs;
- an unknown job is a ``NotFound`` naming it, a bad option a ``ConfigError`` naming its
  field, and the application's transaction stays usable after either; outside a
  transaction the call commits on its own;
- a plain SQL ``INSERT INTO dispatches`` by another connection (no shepherd code) wakes
  the runtime, which runs it within a deadline, with no wake-up datagram sent;
- ``schema=`` finds the shepherd schema when the application's search_path does not
  name it, and leaves that search_path as it was; without it, such a connection gets
  a ``StoreError`` saying so.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
import pytest

from shepherd.runtime import Config, JobSpec, RunContext, Runtime, enqueue_in
from shepherd.store.errors import ConfigError, NotFound, StoreError
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


def _schema(url: str) -> str:
    return parse_qs(urlsplit(url).query)["search_path"][0]


class Seen:
    def __init__(self) -> None:
        self.payloads: list[object] = []

    async def __call__(self, ctx: RunContext) -> None:
        self.payloads.append(ctx.payload)


async def test_a_committed_enqueue_runs_and_a_rolled_back_one_never_exists(pg_url: str) -> None:
    seen = Seen()
    async with Runtime.open(Config(database=pg_url), targets={"seen": seen}) as rt:
        await rt.add_job(JobSpec(name="ship", target="seen"))
        app = await asyncpg.connect(pg_url)
        try:
            await app.execute("CREATE TABLE orders (id SERIAL PRIMARY KEY, item TEXT)")
            async with app.transaction():
                order = await app.fetchval("INSERT INTO orders (item) VALUES ('a') RETURNING id")
                kept = await enqueue_in(app, "ship", {"order": order}, priority="high")
            with pytest.raises(RuntimeError, match="the application failed"):
                async with app.transaction():
                    await app.execute("INSERT INTO orders (item) VALUES ('b')")
                    dropped = await enqueue_in(app, "ship", {"order": 2})
                    raise RuntimeError("the application failed")
            await eventually(lambda: seen.payloads == [{"order": order}], what="the commit ran")
            d = await rt.store.dispatch(kept)
            assert d is not None and d.priority == "high"
            assert await rt.store.dispatch(dropped) is None
            assert await app.fetchval("SELECT count(*) FROM orders") == 1
            with anyio.fail_after(10):
                while (d := await rt.store.dispatch(kept)) is not None and d.status != "done":
                    await anyio.sleep(0.01)
            assert await app.fetchval("SELECT origin FROM dispatches WHERE id = $1", kept) != (
                rt.instance
            )
            assert seen.payloads == [{"order": order}]
        finally:
            await app.close()


async def test_errors_name_the_job_or_field_and_leave_the_transaction_usable(
    pg_url: str,
) -> None:
    async with Runtime.open(Config(database=pg_url), targets={"seen": Seen()}) as rt:
        await rt.add_job(JobSpec(name="ship", target="seen"))
        app = await asyncpg.connect(pg_url)
        try:
            async with app.transaction():
                with pytest.raises(NotFound, match="no job named 'nope'"):
                    await enqueue_in(app, "nope")
                with pytest.raises(ConfigError) as caught:
                    await enqueue_in(app, "ship", priority="urgent-ish")
                assert caught.value.field is not None and "priority" in caught.value.field
                assert await app.fetchval("SELECT 1") == 1  # still usable
                assert await enqueue_in(app, "ship", delay=3600) > 0
            assert (await rt.store.stats())["dispatches"].get("queued") == 1
            await enqueue_in(app, "ship", delay=3600)  # no transaction: its own, committed
            assert (await rt.store.stats())["dispatches"].get("queued") == 2
        finally:
            await app.close()


async def test_a_plain_sql_insert_by_another_application_is_woken_and_runs(
    pg_url: str,
) -> None:
    seen = Seen()
    async with Runtime.open(Config(database=pg_url), targets={"seen": seen}) as rt:
        job = await rt.add_job(JobSpec(name="ship", target="seen"))
        other = await asyncpg.connect(pg_url)
        try:
            await other.execute(
                "INSERT INTO dispatches (job_id, job_name, kind, status, priority, not_before,"
                " max_attempts, payload, created_at, updated_at)"
                " VALUES ($1, 'ship', 'enqueue', 'queued', 2, 0, 1, $2, 0, 0)",
                job.id,
                b'{"from":"sql"}',
            )
            await eventually(
                lambda: seen.payloads == [{"from": "sql"}], timeout=5, what="the SQL insert ran"
            )
        finally:
            await other.close()
        assert rt.store.statistics()["notifications"] >= 1


async def test_schema_names_the_shepherd_schema_outside_the_search_path(
    pg_url: str, pg_database: str
) -> None:
    seen = Seen()
    async with Runtime.open(Config(database=pg_url), targets={"seen": seen}) as rt:
        await rt.add_job(JobSpec(name="ship", target="seen"))
        app = await asyncpg.connect(pg_database)  # search_path: public
        try:
            async with app.transaction():
                before = await app.fetchval("SHOW search_path")
                with pytest.raises(StoreError, match="schema="):
                    await enqueue_in(app, "ship")  # no shepherd tables in public
                await enqueue_in(app, "ship", {"n": 1}, schema=_schema(pg_url))
                assert await app.fetchval("SHOW search_path") == before
            await eventually(lambda: seen.payloads == [{"n": 1}], what="the dispatch ran")
        finally:
            await app.close()
