"""The PostgreSQL engine across lost connections (server restart, or a rescuing node
terminating our backends with ``pg_terminate_backend``):

- the writer lost between batches is reconnected before the next one, which commits;
- the writer lost in the middle of a batch, before its COMMIT was sent, took the
  transaction with it: the batch runs again on a new connection and commits once;
  lost while committing, the batch fails with a ``StoreError`` (it may have committed:
  not run again) and the next batch reconnects;
- a batch cancelled while it waits on the server (its caller gone) commits nothing,
  and the next batch commits on a fresh connection;
- a read whose pooled connection is lost, idle or in the middle of the query, answers
  on a fresh connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from shepherd.store.errors import StoreError
from shepherd.store.ops.controls import SetPause
from shepherd.store.postgres.engine import PgStore
from shepherd.store.postgres.opening import POOL_MAX
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _terminate(admin: asyncpg.Connection, pid: int) -> None:
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True


async def _waiting_on_a_lock(admin: asyncpg.Connection, query: str) -> int | None:
    """The pid of the backend blocked on a lock while running ``query`` (a fragment).
    ``admin`` may be inside a transaction: its cached activity snapshot is dropped."""
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    pid = await admin.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"  # never another test run's (pytest -n)
        " AND position($1 in query) > 0 AND pid != pg_backend_pid()",
        query,
    )
    return None if pid is None else int(pid)


async def test_a_writer_lost_between_batches_reconnects_for_the_next(
    pg_url: str, admin: asyncpg.Connection
) -> None:
    store = await PgStore.open(pg_url, node="n1")
    try:
        await store.apply_one(SetPause(scope="job", name="a", at=1.0))
        await _terminate(admin, store._writer.get_server_pid())
        await eventually(lambda: store._writer.is_closed(), what="the writer to see its end")
        assert await store.apply_one(SetPause(scope="job", name="b", at=2.0)) is True
        assert [p.name for p in await store.pauses()] == ["a", "b"]
        name = await admin.fetchval(  # still the node's: a rescue can end it again
            "SELECT application_name FROM pg_stat_activity WHERE pid = $1",
            store._writer.get_server_pid(),
        )
        assert name == store.backend != ""
    finally:
        await store.close()


async def test_a_writer_lost_in_a_batch_before_its_commit_runs_it_again_on_a_new_one(
    store: PgStore, admin: asyncpg.Connection
) -> None:
    await store.apply_one(SetPause(scope="job", name="a", at=1.0))
    ops = [
        SetPause(scope="job", name="new", at=2.0),
        SetPause(scope="job", name="a", at=2.0, reason="held"),
    ]
    results: list[object] = []

    async def update_blocked() -> None:
        results.extend(await store.apply(ops))

    # hold job:a's row, so the batch waits inside
    async with anyio.create_task_group() as tg, admin.transaction():
        await admin.execute("SELECT 1 FROM pauses WHERE name = 'a' FOR UPDATE")
        tg.start_soon(update_blocked)
        await eventually(
            lambda: _waiting_on_a_lock(admin, "UPDATE pauses"),
            what="the batch to wait for the row lock",
        )
        first = await _waiting_on_a_lock(admin, "UPDATE pauses")
        assert first == store._writer.get_server_pid()
        await _terminate(admin, first)

        async def again_on_another() -> bool:
            pid = await _waiting_on_a_lock(admin, "UPDATE pauses")
            return pid is not None and pid != first

        await eventually(again_on_another, what="the batch to run again, on a new backend")
    # the row is released: the second run of the batch commits, once
    assert results == [True, False]  # "new" paused now, "a" already was (its reason set)
    assert [(p.name, p.reason) for p in await store.pauses()] == [("a", "held"), ("new", None)]


async def test_a_writer_lost_while_committing_fails_the_batch(
    store: PgStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lost once the COMMIT was sent, the batch may have committed: it is not run again,
    its callers get the StoreError, and the next batch reconnects."""
    await store.apply_one(SetPause(scope="job", name="a", at=1.0))
    real_commit = asyncpg.transaction.Transaction.commit
    calls: list[int] = []

    async def commit_lost(self: asyncpg.transaction.Transaction) -> None:
        calls.append(1)
        await real_commit(self)  # it did commit; the answer never came back
        self._connection.terminate()
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", commit_lost)
    with pytest.raises(StoreError, match="connection"):
        await store.apply_one(SetPause(scope="job", name="b", at=2.0))
    assert calls == [1]  # not run again
    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", real_commit)
    assert await store.apply_one(SetPause(scope="job", name="c", at=3.0)) is True
    assert [p.name for p in await store.pauses()] == ["a", "b", "c"]


async def test_a_batch_cancelled_in_flight_commits_nothing_and_the_next_one_commits(
    store: PgStore, admin: asyncpg.Connection
) -> None:
    await store.apply_one(SetPause(scope="job", name="a", at=1.0))
    async with admin.transaction():  # hold job:a's row, so the batch waits inside
        await admin.execute("SELECT 1 FROM pauses WHERE name = 'a' FOR UPDATE")
        async with anyio.create_task_group() as tg:
            ops = [
                SetPause(scope="job", name="new", at=2.0),
                SetPause(scope="job", name="a", at=2.0, reason="held"),
            ]
            tg.start_soon(store.apply, ops)
            await eventually(
                lambda: _waiting_on_a_lock(admin, "UPDATE pauses"),
                what="the batch to wait for the row lock",
            )
            tg.cancel_scope.cancel()
    assert await store.apply_one(SetPause(scope="job", name="b", at=3.0)) is True
    assert [(p.name, p.reason) for p in await store.pauses()] == [("a", None), ("b", None)]


async def test_reads_survive_the_loss_of_pooled_connections(
    store: PgStore, admin: asyncpg.Connection
) -> None:
    await store.apply_one(SetPause(scope="runtime", name="", at=1.0))
    assert len(await store.pauses()) == 1
    writer = store._writer.get_server_pid()
    idle = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid NOT IN (pg_backend_pid(), $1) AND backend_type = 'client backend'"
        " AND state = 'idle'",
        writer,
    )
    assert idle
    for row in idle:  # the pool's idle connections (and any other idle one of the run)
        await admin.fetchval("SELECT pg_terminate_backend($1)", row[0])
    assert len(await store.pauses()) == 1

    got: list[int] = []

    async def read_blocked() -> None:
        got.append(len(await store.pauses()))

    # the read waits for the table lock, then its connection dies under it
    async with anyio.create_task_group() as tg, admin.transaction():
        await admin.execute("LOCK TABLE pauses IN ACCESS EXCLUSIVE MODE")
        tg.start_soon(read_blocked)
        await eventually(
            lambda: _waiting_on_a_lock(admin, "FROM pauses"),
            what="the read to wait for the table lock",
        )
        pid = await _waiting_on_a_lock(admin, "FROM pauses")
        assert pid is not None and pid != writer
        await _terminate(admin, pid)
        await eventually(lambda: _retried(admin, pid), what="the read to run again")
    assert got == [1]


async def _retried(admin: asyncpg.Connection, dead: int) -> bool:
    """A backend other than ``dead`` now waits to read ``pauses``."""
    pid = await _waiting_on_a_lock(admin, "FROM pauses")
    return pid is not None and pid != dead


class _DeadFirst:
    """A stand-in for the read pool: its first ``dead`` connections are gone (their
    backends ended, as a rescue ends every connection of a node at once), then the
    real pool's."""

    def __init__(self, pool: asyncpg.Pool, dead: int) -> None:
        self.pool = pool
        self.dead = dead

    def acquire(self) -> object:
        if self.dead:
            self.dead -= 1
            return _Gone()
        return self.pool.acquire()


class _Gone:
    async def __aenter__(self) -> object:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def fetchval(self, *args: object, **kwargs: object) -> object:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")


async def test_a_read_finds_a_live_connection_when_every_pooled_one_was_ended(
    store: PgStore,
) -> None:
    real = store._pool
    store._pool = _DeadFirst(real, dead=POOL_MAX)  # type: ignore[assignment]
    try:
        assert await store.read(lambda conn: conn.fetchval("SELECT 41 + 1")) == 42
        store._pool = _DeadFirst(real, dead=POOL_MAX + 1)  # type: ignore[assignment]
        with pytest.raises(StoreError, match="connection"):
            await store.read(lambda conn: conn.fetchval("SELECT 1"))
    finally:
        store._pool = real
