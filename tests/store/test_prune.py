"""The pruner's write ops (store/ops/retention.py, SQL in store/sqlite/prune.py), on a real
SQLite file.

Rows are written with plain SQL (as an old database would hold them); each op is
applied through ``SqliteStore.apply_one`` as the store writer applies it. What must
hold: a batch never deletes more than its limit, the cutoffs select exactly the rows
the rules name, and what must stay stays (running runs, queued / running
dispatches, a dead letter's runs, a keyed dispatch inside its key's lifetime, the
newest row of each table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest

from shepherd.store.ops import (
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneKeys,
    PruneMessages,
    PruneRunsBefore,
    PruneRunsPerJob,
)
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

DAY = 86400.0
NOW = 1_700_000_000.0


@pytest.fixture
async def store(db_path: str) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(db_path)
    yield s
    await s.close()


def dispatch(
    conn: sqlite3.Connection,
    id_: int,
    status: str,
    *,
    updated: float,
    job: int = 1,
    key: str | None = None,
    run_key: str | None = None,
    seq: int | None = None,
) -> None:
    """``key``: a producer's key (both columns); ``run_key``: a system key (a slot's)."""
    conn.execute(
        "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority, not_before,"
        " max_attempts, idempotency_key, producer_key, created_at, updated_at)"
        " VALUES (?, ?, ?, 'j', 'enqueue', ?, 2, 0, 3, ?, ?, ?, ?)",
        (id_, id_ if seq is None else seq, job, status, key or run_key, key, updated, updated),
    )


def run(
    conn: sqlite3.Connection,
    id_: int,
    *,
    job: int = 1,
    status: str = "ok",
    finished: float | None = NOW - DAY,
    dispatch_id: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
        " finished_at) VALUES (?, ?, ?, 'j', 1, ?, 0, ?)",
        (id_, dispatch_id, job, status, None if status == "running" else finished),
    )


def ids(db_path: str, table: str) -> list[int]:
    with sqlite3.connect(db_path) as conn:
        return [int(r[0]) for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


async def drain(store: SqliteStore, op: PruneRunsPerJob) -> tuple[int, int]:
    """Apply ``op`` until its cursor says done; (rows deleted, ops applied)."""
    deleted = applied = 0
    while True:
        got: Pruned = await store.apply_one(op)
        deleted, applied = deleted + got.deleted, applied + 1
        if got.cursor is None:
            return deleted, applied
        op = PruneRunsPerJob(keep=op.keep, limit=op.limit, after_job=got.cursor, max_jobs=2)


async def test_runs_per_job_keeps_the_newest_finished_runs_of_every_job(
    store: SqliteStore, db_path: str
) -> None:
    with sqlite3.connect(db_path) as conn:
        for i in range(1, 21):  # job 1: runs 1..20, run 5 still running
            run(conn, i, status="running" if i == 5 else "ok")
        for i in range(21, 24):  # job 2: three runs only
            run(conn, i, job=2)
        for i in range(24, 34):  # job 3: ten runs
            run(conn, i, job=3)
    deleted, applied = await drain(store, PruneRunsPerJob(keep=4, limit=5, max_jobs=2))
    left = ids(db_path, "runs")
    assert left == [5, 17, 18, 19, 20, 21, 22, 23, 30, 31, 32, 33]
    assert deleted == 21 and applied >= 21 / 5  # never more than 5 rows in one op


async def test_one_op_never_deletes_more_than_its_limit(store: SqliteStore, db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        for i in range(1, 101):
            run(conn, i, job=i % 3)
    got = await store.apply_one(PruneRunsPerJob(keep=1, limit=7))
    assert got.deleted == 7 and got.cursor is not None
    got = await store.apply_one(PruneRunsBefore(before=NOW, limit=10))
    assert got == Pruned(10, 0)


async def test_runs_before_a_cutoff_spare_running_runs_and_dead_letters(
    store: SqliteStore, db_path: str
) -> None:
    with sqlite3.connect(db_path) as conn:
        dispatch(conn, 1, "dead", updated=NOW - 9 * DAY)
        dispatch(conn, 2, "queued", updated=NOW)
        run(conn, 1, finished=NOW - 10 * DAY)  # old: goes
        run(conn, 2, finished=NOW - 10 * DAY, dispatch_id=1)  # a dead letter's: stays
        run(conn, 3, status="running")  # running: stays
        run(conn, 4, finished=NOW - 3600)  # recent: stays
        run(conn, 5, finished=NOW - 10 * DAY)  # old: goes
        run(conn, 6, finished=NOW - 3600, dispatch_id=2)
    got = await store.apply_one(PruneRunsBefore(before=NOW - DAY, limit=100))
    assert got == Pruned(2, None)
    assert ids(db_path, "runs") == [2, 3, 4, 6]


async def test_the_newest_row_is_kept_so_ids_and_seqs_are_never_reused(
    store: SqliteStore, db_path: str
) -> None:
    with sqlite3.connect(db_path) as conn:
        run(conn, 1, finished=NOW - 10 * DAY)
        run(conn, 2, finished=NOW - 10 * DAY)
        dispatch(conn, 1, "done", updated=NOW - 10 * DAY, seq=3)
        dispatch(conn, 2, "done", updated=NOW - 10 * DAY, seq=2)
        dispatch(conn, 3, "done", updated=NOW - 10 * DAY, seq=9)  # the highest seq
        dispatch(conn, 4, "done", updated=NOW - 10 * DAY, seq=1)  # the highest id
    await store.apply_one(PruneRunsBefore(before=NOW, limit=100))
    await store.apply_one(PruneDispatches(status="done", before=NOW, keyed_before=NOW, limit=100))
    assert ids(db_path, "runs") == [2]
    assert ids(db_path, "dispatches") == [3, 4]
    with sqlite3.connect(db_path) as conn:
        dispatch(conn, 5, "done", updated=NOW - 10 * DAY, seq=10)
        dispatch(conn, 6, "done", updated=NOW - 10 * DAY, seq=4)
    await store.apply_one(PruneDispatches(status="done", before=NOW, keyed_before=NOW, limit=100))
    assert ids(db_path, "dispatches") == [5, 6]  # 5 holds the highest seq, 6 the highest id


async def test_ended_dispatches_go_by_status_and_age_producer_keys_not_before_their_key(
    store: SqliteStore, db_path: str
) -> None:
    old, older = NOW - 2 * DAY, NOW - 9 * DAY
    with sqlite3.connect(db_path) as conn:
        dispatch(conn, 1, "done", updated=old)  # goes
        dispatch(conn, 2, "done", updated=old, key="producer-key")  # key still live: stays
        dispatch(conn, 3, "done", updated=older, key="old-key")  # past both: goes
        dispatch(conn, 4, "cancelled", updated=old)  # another op's status: stays
        dispatch(conn, 5, "queued", updated=older)  # queued: never
        dispatch(conn, 6, "running", updated=older)  # running: never
        dispatch(conn, 7, "done", updated=NOW)  # recent: stays
        dispatch(conn, 8, "done", updated=old, run_key="slot:1:1700")  # a system key: goes
        dispatch(conn, 9, "done", updated=NOW)  # the newest row
    op = PruneDispatches(status="done", before=NOW - DAY, keyed_before=NOW - 7 * DAY, limit=100)
    assert await store.apply_one(op) == Pruned(3, None)
    assert ids(db_path, "dispatches") == [2, 4, 5, 6, 7, 9]


async def test_a_dead_letter_goes_with_its_runs(store: SqliteStore, db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        dispatch(conn, 1, "dead", updated=NOW - 9 * DAY)
        dispatch(conn, 2, "dead", updated=NOW)
        dispatch(conn, 3, "done", updated=NOW)
        for i, d in enumerate((1, 1, 2, 3), start=1):
            run(conn, i, dispatch_id=d)
    op = PruneDispatches(status="dead", before=NOW - DAY, keyed_before=NOW - DAY, limit=10)
    assert await store.apply_one(op) == Pruned(1, None, runs=2)
    assert ids(db_path, "dispatches") == [2, 3]
    assert ids(db_path, "runs") == [3, 4]


async def test_messages_deliveries_and_keys_by_status_and_age(
    store: SqliteStore, db_path: str
) -> None:
    old = NOW - 40 * DAY
    with sqlite3.connect(db_path) as conn:
        statuses = ["read", "expired", "failed", "delivered", "pending", "read", "read"]
        for i, status in enumerate(statuses, start=1):
            created = NOW if i == 6 else old
            conn.execute(
                "INSERT INTO messages (id, from_agent, to_agent, body, status, created_at,"
                " reply_to) VALUES (?, 'a', 'b', 'hi', ?, ?, ?)",
                (i, status, created, 1 if i == 2 else None),
            )
        for i, status in enumerate(["sent", "failed", "pending", "sent"], start=1):
            conn.execute(
                "INSERT INTO deliveries (id, kind, status, body, max_attempts, created_at,"
                " updated_at) VALUES (?, 'api', ?, 'x', 3, ?, ?)",
                (i, status, old, old),
            )
        for i, expires in enumerate([NOW - 1, NOW + 1, NOW - 5]):
            conn.execute(
                "INSERT INTO idempotency (key, job_id, status, claimed_at, expires_at)"
                " VALUES (?, 1, 'claimed', 0, ?)",
                (f"k{i}", expires),
            )
    for status in ("read", "delivered"):
        await store.apply_one(PruneMessages(status=status, before=NOW - DAY, limit=10))
    # read 1 (the parent of 2: its reply_to is cleared), delivered 4; 6 is recent, 7 newest
    assert ids(db_path, "messages") == [2, 3, 5, 6, 7]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT reply_to FROM messages WHERE id = 2").fetchone() == (None,)
    await store.apply_one(PruneDeliveries(status="sent", before=NOW - DAY, limit=10))
    assert ids(db_path, "deliveries") == [2, 3, 4]  # 4 is the newest row
    assert await store.apply_one(PruneKeys(now=NOW, limit=1)) == Pruned(1, 0)
    assert await store.apply_one(PruneKeys(now=NOW, limit=5)) == Pruned(1, None)
    with sqlite3.connect(db_path) as conn:
        assert [r[0] for r in conn.execute("SELECT key FROM idempotency")] == ["k1"]
