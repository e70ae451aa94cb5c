"""One bad op in a group commit fails its own caller only; the rest commit.

A value SQLite cannot bind (an int past 64 bits), a type it cannot bind, a constraint:
each fails the op that carries it, rolled back to its savepoint, and the writer keeps
serving. Driver errors are translated by their SQLite result code, not their words.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio
import pytest

from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.actors.writer import StoreMsg, StoreWriter, write
from shepherd.store.errors import DatabaseCorrupt, DatabaseLocked, DiskFull, ReadOnly, StoreError
from shepherd.store.ops import InsertDispatches, NewDispatch, SaveJob
from shepherd.store.sqlite import SqliteStore, queries, translate

pytestmark = pytest.mark.anyio

HUGE = 10**20  # past SQLite's 64-bit INTEGER: OverflowError when it is bound


def _dispatch(job_id: int, *, max_attempts: Any = 1, payload: Any = None) -> NewDispatch:
    return NewDispatch(
        job_id=job_id,
        job_name="tick",
        kind="enqueue",
        priority=2,
        not_before=0.0,
        max_attempts=max_attempts,
        payload=payload,
    )


def _insert(job_id: int, **kw: Any) -> InsertDispatches:
    return InsertDispatches([_dispatch(job_id, **kw)], "test", 1.0)


async def _store_with_job(db_path: str) -> tuple[SqliteStore, int]:
    store = await SqliteStore.open(db_path)
    await store.apply_one(
        SaveJob(
            name="tick",
            executor="python",
            enabled=True,
            spec=b'{"name":"tick"}',
            next_run_at=None,
            now=1.0,
        )
    )
    row = await store.read(queries.get_job, "tick")
    assert row is not None
    return store, row.id


def _count(db_path: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM dispatches").fetchone()[0])


async def test_a_batch_with_one_bad_op_commits_the_good_ones(db_path: str) -> None:
    store, job_id = await _store_with_job(db_path)
    try:
        ops = [
            _insert(job_id),
            _insert(job_id, max_attempts=HUGE),
            _insert(job_id),
            _insert(job_id, payload=object()),  # a type SQLite cannot bind
            _insert(job_id),
        ]
        results = await store.apply(ops)
        assert isinstance(results[1], StoreError) and "OverflowError" in str(results[1])
        assert isinstance(results[1].__cause__, OverflowError)
        assert isinstance(results[3], StoreError)
        good = [results[i] for i in (0, 2, 4)]
        assert all(isinstance(r, list) and r[0] is not None for r in good), results
        assert _count(db_path) == 3  # the good ones, nothing of the bad ones
    finally:
        await store.close()


async def test_a_batch_of_one_bad_op_fails_alone_and_the_store_goes_on(db_path: str) -> None:
    store, job_id = await _store_with_job(db_path)
    try:
        [result] = await store.apply([_insert(job_id, max_attempts=HUGE)])
        assert isinstance(result, StoreError) and "OverflowError" in str(result)
        with pytest.raises(StoreError, match="OverflowError"):
            await store.apply_one(_insert(job_id, max_attempts=HUGE))
        assert _count(db_path) == 0
        await store.apply_one(_insert(job_id))  # the connection is not stuck in a transaction
        assert _count(db_path) == 1
    finally:
        await store.close()


async def test_the_writer_fails_only_the_bad_ops_caller_and_keeps_serving(db_path: str) -> None:
    """The issue's scenario at the writer: ops of a healthy producer share batches with
    an op carrying 10**20; before, every such batch crashed the writer."""
    store, job_id = await _store_with_job(db_path)
    mailbox: Mailbox[StoreMsg] = Mailbox("writer", 1000)
    writer = StoreWriter(store, mailbox)
    outcomes: dict[str, list[Any]] = {"good": [], "bad": []}

    async def produce(kind: str, n: int) -> None:
        for _ in range(n):
            op = _insert(job_id, max_attempts=HUGE if kind == "bad" else 1)
            try:
                outcomes[kind].append(await write(mailbox.address(), op))
            except StoreError as exc:
                outcomes[kind].append(exc)

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            with anyio.fail_after(20):
                async with anyio.create_task_group() as producers:
                    for _ in range(4):
                        producers.start_soon(produce, "good", 8)
                    producers.start_soon(produce, "bad", 8)
            tg.cancel_scope.cancel()
        assert all(isinstance(r, StoreError) for r in outcomes["bad"])
        assert len(outcomes["good"]) == 32
        assert all(isinstance(r, list) for r in outcomes["good"]), outcomes["good"]
        assert _count(db_path) == 32
        assert writer.statistics()["ops"] == 40
        assert writer.statistics()["largest_batch"] > 1  # good and bad ops shared batches
    finally:
        await store.close()


def _coded(cls: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    exc = cls(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    exc.sqlite_errorname = f"code {code}"  # type: ignore[attr-defined]
    return exc


def test_translate_goes_by_result_code_not_by_words() -> None:
    # the words of one class, the code of another: the code wins
    assert type(translate(_coded(sqlite3.OperationalError, "x", sqlite3.SQLITE_FULL), "db")) is (
        DiskFull
    )
    wordy = _coded(sqlite3.OperationalError, "no such table: full_locked_readonly", 1)
    assert type(translate(wordy, "db")) is StoreError
    busy = _coded(sqlite3.OperationalError, "database is locked", sqlite3.SQLITE_BUSY)
    assert type(translate(busy, "db")) is DatabaseLocked
    # an extended code maps by its primary code
    snapshot = _coded(sqlite3.OperationalError, "snapshot", sqlite3.SQLITE_BUSY_SNAPSHOT)
    assert type(translate(snapshot, "db")) is DatabaseLocked
    ro = _coded(sqlite3.OperationalError, "attempt", sqlite3.SQLITE_READONLY)
    assert type(translate(ro, "db")) is ReadOnly
    bad = _coded(sqlite3.DatabaseError, "damaged", sqlite3.SQLITE_CORRUPT)
    assert type(translate(bad, "db")) is DatabaseCorrupt
    # an I/O error growing the -shm file is a full disk; another is named by its code
    shm = _coded(sqlite3.OperationalError, "disk I/O error", sqlite3.SQLITE_IOERR_SHMSIZE)
    assert type(translate(shm, "db")) is DiskFull
    write = _coded(sqlite3.OperationalError, "disk I/O error", sqlite3.SQLITE_IOERR_WRITE)
    got = translate(write, "db")
    assert type(got) is StoreError and f"code {sqlite3.SQLITE_IOERR_WRITE}" in str(got)


async def test_real_driver_errors_translate_to_the_same_classes(
    db_path: str, tmp_path: Any
) -> None:
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"this is not an SQLite file at all" * 200)
    with pytest.raises(DatabaseCorrupt):
        await SqliteStore.open(str(foreign))
    store = await SqliteStore.open(db_path, busy_timeout=0.05)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # hold the write lock
        with pytest.raises(DatabaseLocked):
            await store.apply_one(_insert(1))
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()
