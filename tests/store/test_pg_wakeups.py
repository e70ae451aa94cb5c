"""Wake-ups on PostgreSQL (``store.postgres.listen`` and the triggers of migration 2):

- a plain SQL ``INSERT INTO dispatches`` by another connection (no shepherd code on
  that side) wakes ``PgStore.wakeups()`` within a deadline, as does a requeue by UPDATE;
  an UPDATE that queues nothing (a claim) notifies nothing;
- a cancel asked by plain SQL wakes with ``c``;
- late seqs: a seq below the reader's high-water mark that commits later lowers the
  next read (``Listener.floor``), so ``queued_since(high-water mark)`` returns it;
- a dropped LISTEN connection (its backend terminated) is reconnected; the wake-up
  after it asks for a catch-up (``dc``, floor ``LOOKBACK`` behind), and new inserts
  wake again;
- a server that does not answer when the wake-ups start is retried, not raised;
- the pooler check (``opening._check_pooler``) refuses a backend pid that changes
  between transactions, on the engine's connections and on the listener's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import pytest

from shepherd.store.errors import ConfigError
from shepherd.store.postgres import listen, opening
from shepherd.store.postgres.engine import PgStore

pytestmark = pytest.mark.anyio

_INSERT = (
    "INSERT INTO dispatches (job_id, job_name, kind, status, priority, not_before,"
    " max_attempts, created_at, updated_at)"
    " VALUES (1, 'sql-job', 'manual', 'queued', 2, 0, 1, 0, 0) RETURNING seq"
)


@asynccontextmanager
async def woken(url: str) -> AsyncIterator[tuple[PgStore, list[str]]]:
    """A store whose wake-ups are collected into a list (by a task of their own)."""
    store = await PgStore.open(url)
    got: list[str] = []

    async def hear() -> None:
        async for flags in store.wakeups():
            got.append(flags)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hear)
            await store._listener.ensure()
            yield store, got
            tg.cancel_scope.cancel()
    finally:
        await store.close()


async def until(predicate: Any, what: str, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.002)


async def test_a_plain_sql_insert_by_another_connection_wakes_the_store(pg_url: str) -> None:
    async with woken(pg_url) as (_store, got):
        other = await asyncpg.connect(pg_url)
        try:
            await other.fetchval(_INSERT)
            await until(lambda: any("d" in f for f in got), "the insert's wake-up")
            n = len(got)
            # a claim (queued -> running) queues nothing: no wake-up; a requeue does
            await other.execute("UPDATE dispatches SET status = 'running'")
            await other.execute("UPDATE dispatches SET cancel_requested = 1")
            await until(lambda: any("c" in f for f in got[n:]), "the cancel's wake-up")
            assert not any("d" in f for f in got[n:])
            await other.execute(
                "UPDATE dispatches SET status = 'queued', seq = nextval('dispatch_seq')"
            )
            await until(lambda: any("d" in f for f in got[n:]), "the requeue's wake-up")
        finally:
            await other.close()


async def test_an_insert_rolled_back_wakes_no_one(pg_url: str) -> None:
    async with woken(pg_url) as (store, got):
        other = await asyncpg.connect(pg_url)
        try:
            tx = other.transaction()
            await tx.start()
            await other.fetchval(_INSERT)
            await tx.rollback()
            await other.execute("SELECT pg_notify($1, 'x')", store._listener.channel)
            await until(lambda: "x" in "".join(got), "the marker notification")
            assert not any("d" in f for f in got)
        finally:
            await other.close()


async def test_a_lower_seq_committed_late_lowers_the_next_read(pg_url: str) -> None:
    async with woken(pg_url) as (store, got):
        a, b = await asyncpg.connect(pg_url), await asyncpg.connect(pg_url)
        try:
            tx = a.transaction()
            await tx.start()
            low = int(await a.fetchval(_INSERT))  # takes its seq, commits last
            high = int(await b.fetchval(_INSERT))
            assert low < high
            await until(lambda: len(got) >= 1, "the first commit's wake-up")
            assert store._listener.floor(high) == high - 1  # what was notified, no lower
            assert store._listener.floor(high) == high  # taken: nothing late
            await tx.commit()
            await until(lambda: len(got) >= 2, "the late commit's wake-up")
            assert store._listener.floor(high) == low - 1
            assert store._listener.floor(high) == high
        finally:
            await a.close()
            await b.close()


async def test_queued_since_past_the_high_water_mark_finds_a_seq_committed_late(
    pg_url: str,
) -> None:
    async with woken(pg_url) as (store, got):
        a, b = await asyncpg.connect(pg_url), await asyncpg.connect(pg_url)
        try:
            tx = a.transaction()
            await tx.start()
            low = int(await a.fetchval(_INSERT))
            high = int(await b.fetchval(_INSERT))
            await until(lambda: len(got) >= 1, "the first commit's wake-up")
            assert [d.seq for d in await store.queued_since(0)] == [high]
            await tx.commit()
            await until(lambda: len(got) >= 2, "the late commit's wake-up")
            # the dispatcher asks past the newest seq it holds; the late one comes back
            assert low in [d.seq for d in await store.queued_since(high)]
            assert await store.queued_since(high) == []
        finally:
            await a.close()
            await b.close()


async def test_a_dropped_listen_connection_is_restored_with_a_catch_up(pg_url: str) -> None:
    async with woken(pg_url) as (store, got):
        listener = store._listener
        assert listener._conn is not None
        pid = listener._conn.get_server_pid()
        admin = await asyncpg.connect(pg_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await until(lambda: listener.reconnects == 1, "the reconnect", timeout=15)
            await until(lambda: "cd" in got, "the catch-up wake-up")
            assert listener._conn is not None and listener._conn.get_server_pid() != pid
            # notifications may have been lost meanwhile: a bounded catch-up
            assert listener.floor(10**9) == 10**9 - listen.LOOKBACK
            assert listener.floor(10**9) == 10**9
            listener._lost = True
            assert listener.floor(5) == 0
            assert listener.floor(10**9) == 10**9
            n = len(got)
            await admin.fetchval(_INSERT)
            await until(lambda: len(got) > n, "a wake-up after the reconnect")
        finally:
            await admin.close()
        assert store.statistics()["listen_reconnects"] == 1


class _Pooled:
    """A stand-in connection behind a transaction-mode pooler: each query (each
    transaction) lands on another backend."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = iter(pids)
        self.closed = False

    async def fetchval(self, sql: str) -> int:
        assert sql == "SELECT pg_backend_pid()"
        return next(self._pids)

    async def close(self) -> None:
        self.closed = True


async def test_the_pooler_check_refuses_a_changing_backend_pid() -> None:
    dsn = "postgresql://app:secret@pgbouncer:6432/db"
    with pytest.raises(ConfigError) as caught:
        await opening._check_pooler(_Pooled([101, 102, 103, 104]), dsn)  # type: ignore[arg-type]
    assert caught.value.field == "database"
    message = str(caught.value)
    assert "transaction mode" in message and "LISTEN/NOTIFY" in message
    assert "secret" not in message  # the password is redacted
    await opening._check_pooler(_Pooled([7, 7, 7, 7]), dsn)  # type: ignore[arg-type]


async def test_the_listener_refuses_a_pooler_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = _Pooled([1, 2, 3, 4])

    async def fake_connect(dsn: str, **kwargs: Any) -> _Pooled:
        return stand_in

    monkeypatch.setattr(listen, "connect", fake_connect)
    listener = listen.Listener("postgresql://u@pooler/db", "shepherd")
    with pytest.raises(ConfigError, match="LISTEN/NOTIFY") as caught:
        await listener.ensure()
    assert caught.value.field == "database"
    assert stand_in.closed and not listener.listening


def test_the_channel_is_the_schemas_and_fits_an_identifier() -> None:
    assert listen.channel_of("shepherd") == "shepherd_shepherd"
    assert len(listen.channel_of("s" * 63)) == 63


async def test_a_server_down_at_start_is_retried_by_the_wakeups(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = listen.connect
    failures = [OSError("connection refused"), OSError("connection refused")]

    async def flaky(dsn: str, **kwargs: Any) -> asyncpg.Connection:
        if failures:
            raise failures.pop()
        return await real(dsn, **kwargs)

    monkeypatch.setattr(listen, "connect", flaky)
    listener = listen.Listener(pg_url, "unused")
    try:
        with anyio.fail_after(10):
            async for flags in listener.wakeups():
                assert flags == "cd"  # connected at last: a catch-up
                break
        assert listener.listening and listener.reconnects == 1 and not failures
    finally:
        await listener.close()
