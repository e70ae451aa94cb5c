"""Small groups of the dispatch path commit on the event loop's thread
(``store.sqlite.inline``); everything else, and everything while the write lock is held
elsewhere or a hop may still run on the writer's thread, goes to that thread."""

from __future__ import annotations

import sqlite3

import anyio
import pytest

from shepherd.store.ops import InsertDispatches, NewDispatch, SaveJob
from shepherd.store.sqlite import SqliteStore
from shepherd.store.sqlite.inline import INLINE_ROWS, small

pytestmark = pytest.mark.anyio


async def _job(store: SqliteStore) -> int:
    job_id: int = await store.apply_one(
        SaveJob("a", "python", True, b'{"name":"a","target":"ok"}', None, 1.0)
    )
    return job_id


def _insert(job_id: int, n: int) -> InsertDispatches:
    row = NewDispatch(
        job_id=job_id, job_name="a", kind="enqueue", priority=2, not_before=0.0, max_attempts=1
    )
    return InsertDispatches([row] * n, "test", 1.0)


def _count(path: str) -> int:
    with sqlite3.connect(path) as conn:
        n: int = conn.execute("SELECT COUNT(*) FROM dispatches").fetchone()[0]
    return n


def test_only_small_groups_of_the_dispatch_path_are_let_through() -> None:
    assert small([_insert(1, INLINE_ROWS)])
    assert small([_insert(1, INLINE_ROWS // 2), _insert(1, INLINE_ROWS // 2)])
    assert not small([_insert(1, INLINE_ROWS + 1)])
    assert not small([_insert(1, INLINE_ROWS), _insert(1, 1)])
    assert not small([SaveJob("a", "python", True, b"{}", None, 1.0)])  # not of the path


async def test_a_small_group_commits_on_the_loops_thread_and_a_large_one_hops(
    sqlite_store: SqliteStore, db_path: str
) -> None:
    job_id = await _job(sqlite_store)  # SaveJob: not of the dispatch path
    assert sqlite_store.commits_inline == 0
    await sqlite_store.apply([_insert(job_id, 2)])
    assert sqlite_store.commits_inline == 1
    await sqlite_store.apply([_insert(job_id, INLINE_ROWS + 1)])
    assert (sqlite_store.commits_inline, sqlite_store.commits) == (1, 3)
    assert _count(db_path) == INLINE_ROWS + 3
    assert sqlite_store.statistics()["commits_inline"] == 1


async def test_synchronous_full_never_commits_on_the_loops_thread(db_path: str) -> None:
    store = await SqliteStore.open(db_path, synchronous="FULL")
    try:
        await store.apply([_insert(await _job(store), 1)])
        assert store.commits_inline == 0 and _count(db_path) == 1
    finally:
        await store.close(checkpoint=False)


async def test_a_write_lock_held_elsewhere_is_waited_for_on_the_thread(
    sqlite_store: SqliteStore, db_path: str
) -> None:
    job_id = await _job(sqlite_store)
    other = sqlite3.connect(db_path, isolation_level=None)
    result: list[object] = []
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock

        async def apply() -> None:
            result.extend(await sqlite_store.apply([_insert(job_id, 1)]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(apply)
            while not sqlite_store._hops:  # the inline attempt gave way: waiting on the thread
                await anyio.lowlevel.checkpoint()
            assert not result and sqlite_store.commits_inline == 0
            other.execute("COMMIT")  # the busy timeout (5 s) outlasts this
    finally:
        other.close()
    assert len(result) == 1 and sqlite_store.commits_inline == 0
    assert _count(db_path) == 1
    await sqlite_store.apply([_insert(job_id, 1)])  # the lock is free: inline again
    assert sqlite_store.commits_inline == 1
    # inline commits run with no busy timeout; the next hop waits as configured again
    assert sqlite_store._writer._conn.execute("PRAGMA busy_timeout").fetchone() == (0,)

    def busy(conn: sqlite3.Connection) -> object:
        return conn.execute("PRAGMA busy_timeout").fetchone()

    assert await sqlite_store._on_writer(busy) == (5000,)


async def test_a_cancelled_hop_keeps_commits_off_the_loops_thread_until_one_returns(
    sqlite_store: SqliteStore, db_path: str
) -> None:
    job_id = await _job(sqlite_store)
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled at its first wait: the hop may still run on the thread
        await sqlite_store.apply([_insert(job_id, INLINE_ROWS + 1)])
    assert sqlite_store._abandoned
    await sqlite_store.apply([_insert(job_id, 1)])  # behind the abandoned hop, on the thread
    assert sqlite_store.commits_inline == 0 and not sqlite_store._abandoned
    await sqlite_store.apply([_insert(job_id, 1)])
    assert sqlite_store.commits_inline == 1
