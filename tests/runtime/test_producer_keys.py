"""A producer's idempotency key is bound to its dispatch for as long as the dispatch row
exists, whatever its state: enqueueing the key again for the same job returns that
dispatch (``enqueue``, ``enqueue_many``), and nothing runs again; only ``retry_dead``
runs a dead one again. Keys that cannot be a producer's key are refused, naming the
field. A unique index enforces it; existing files migrate, duplicates included.
Real SQLite files, the real runtime."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from shepherd.runtime import (
    Config,
    ConfigError,
    EnqueueRequest,
    JobSpec,
    RetryPolicy,
    RunContext,
    Runtime,
)
from shepherd.store.keys import MAX_KEY
from shepherd.store.ops import ClaimRun, ClaimRuns, InsertDispatches, NewDispatch, RecoverOrphans
from shepherd.store.sqlite import SqliteStore
from shepherd.store.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio

ONE = RetryPolicy(max_attempts=1)


class Work:
    """Targets: ``ok`` returns, ``fail`` raises while ``failing``; both count runs."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.failing = True

    async def ok(self, ctx: RunContext) -> str:
        self.runs.append(ctx.dispatch_id)
        return "ok"

    async def fail(self, ctx: RunContext) -> None:
        self.runs.append(ctx.dispatch_id)
        if self.failing:
            raise RuntimeError("no")


@pytest.fixture
def work() -> Work:
    return Work()


def session(db_path: str, work: Work) -> Any:
    targets = {"ok": work.ok, "fail": work.fail}
    return Runtime.open(Config(database=db_path, shutdown_grace=0), targets=targets)


def dispatch_count(db_path: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM dispatches").fetchone()[0])


async def test_a_done_dispatch_keeps_its_key(db_path: str, work: Work) -> None:
    async with session(db_path, work) as rt:
        await rt.add_job(JobSpec(name="a", target="ok"))
        first = await rt.enqueue("a", idempotency_key="invoice-1")
        assert (await rt.wait(first, timeout=10)).status == "done"
        assert await rt.enqueue("a", idempotency_key="invoice-1") == first
        assert await rt.enqueue_many([EnqueueRequest(job="a", idempotency_key="invoice-1")]) == [
            first
        ]
    assert work.runs == [first] and dispatch_count(db_path) == 1


async def test_a_cancelled_dispatch_keeps_its_key(db_path: str, work: Work) -> None:
    async with session(db_path, work) as rt:
        await rt.add_job(JobSpec(name="a", target="ok"))
        first = await rt.enqueue("a", delay=3600, idempotency_key="k")
        assert await rt.cancel(first) == "cancelled"
        assert await rt.enqueue("a", idempotency_key="k") == first
        assert (await rt.dispatch(first)).status == "cancelled"
    assert work.runs == [] and dispatch_count(db_path) == 1


async def test_a_dead_dispatch_keeps_its_key_until_retried(db_path: str, work: Work) -> None:
    async with session(db_path, work) as rt:
        await rt.add_job(JobSpec(name="f", target="fail", retry=ONE))
        first = await rt.enqueue("f", idempotency_key="k")
        assert (await rt.wait(first, timeout=10)).status == "dead"
        assert await rt.enqueue("f", idempotency_key="k") == first  # not a new dispatch
        assert (await rt.dispatch(first)).status == "dead"
        assert work.runs == [first]

        work.failing = False
        assert await rt.retry_dead([first]) == [first]  # the one way to run it again
        assert (await rt.wait(first, timeout=10)).status == "done"
        assert await rt.enqueue("f", idempotency_key="k") == first
    assert work.runs == [first, first] and dispatch_count(db_path) == 1


async def test_enqueue_many_binds_each_key_once(db_path: str, work: Work) -> None:
    async with session(db_path, work) as rt:
        await rt.add_job(JobSpec(name="a", target="ok"))
        await rt.add_job(JobSpec(name="b", target="ok"))
        old = await rt.enqueue("a", idempotency_key="old")
        ids = await rt.enqueue_many(
            [
                EnqueueRequest(job="a", idempotency_key="x"),
                EnqueueRequest(job="a", idempotency_key="x"),  # same batch, same key
                EnqueueRequest(job="a"),
                EnqueueRequest(job="a", idempotency_key="old"),
                EnqueueRequest(job="b", idempotency_key="x"),  # another job: its own
            ]
        )
        assert ids[0] == ids[1] and ids[3] == old
        assert len({ids[0], ids[2], ids[4], old}) == 4
        for d in {*ids, old}:
            assert (await rt.wait(d, timeout=10)).status == "done"
    assert dispatch_count(db_path) == 4


@pytest.mark.engines("sqlite", "postgresql")
async def test_one_key_on_two_jobs_in_one_claim_batch(db_path: str, work: Work) -> None:
    """Each job binds the key to its own dispatch; their runs share the ledger's key, so
    one runs and the other is skipped (``idempotency-skip``) in the same claim batch,
    whose commit must not fail (the skipped run once took a claimed run's id)."""
    async with session(db_path, work) as rt:
        await rt.add_job(JobSpec(name="a", target="ok"))
        await rt.add_job(JobSpec(name="b", target="ok"))
        a, b = await rt.enqueue_many(
            [
                EnqueueRequest(job="a", idempotency_key="x"),
                EnqueueRequest(job="b", idempotency_key="x"),
            ]
        )
        assert a != b
        for d in (a, b):
            assert (await rt.wait(d, timeout=10)).status == "done"
        runs = sorted((r.status, r.reason or "") for r in await rt.runs(limit=10))
        assert runs == [("ok", ""), ("skipped", "idempotency-skip")]
    assert len(work.runs) == 1


BAD_KEYS = [
    ("", "empty"),
    ("   ", "whitespace"),
    ("\t\n", "whitespace"),
    ("x" * (MAX_KEY + 1), f"at most {MAX_KEY}"),
    ("order-7:replay1", ":replay"),
    ("order-7:replay", ":replay"),
    ("a:replayed", ":replay"),
    (7, "string"),
]


@pytest.mark.parametrize(("key", "why"), BAD_KEYS, ids=[w for _, w in BAD_KEYS])
async def test_keys_that_cannot_be_a_producers_are_refused(
    db_path: str, work: Work, key: Any, why: str
) -> None:
    async with session(db_path, work) as rt:
        await rt.add_job(JobSpec(name="a", target="ok"))
        with pytest.raises(ConfigError) as single:
            await rt.enqueue("a", idempotency_key=key)
        assert single.value.field == "idempotency_key" and why in str(single.value)
        with pytest.raises(ConfigError) as many:
            await rt.enqueue_many(
                [EnqueueRequest(job="a"), EnqueueRequest(job="a", idempotency_key=key)]
            )
        assert many.value.field == "requests[1].idempotency_key"
    assert dispatch_count(db_path) == 0  # nothing stored, not even the good request


async def test_keys_at_the_bounds_are_accepted(db_path: str, work: Work) -> None:
    async with session(db_path, work) as rt:
        await rt.add_job(JobSpec(name="a", target="ok"))
        for key in ("k", "x" * MAX_KEY, "replay", "order-7:retry1", " padded "):
            d = await rt.enqueue("a", idempotency_key=key)
            assert await rt.enqueue("a", idempotency_key=key) == d
    assert dispatch_count(db_path) == 5


async def test_a_crash_replay_changes_the_run_key_not_the_producer_key(db_path: str) -> None:
    store = await SqliteStore.open(db_path)
    try:
        with sqlite3.connect(db_path) as conn:
            spec = '{"name": "alo", "target": "t", "delivery_guarantee": "at-least-once"}'
            conn.execute(
                "INSERT INTO jobs (id, name, executor, spec, created_at, updated_at)"
                " VALUES (1, 'alo', 'python', ?, 0, 0)",
                (spec,),
            )
        new = NewDispatch(
            job_id=1,
            job_name="alo",
            kind="enqueue",
            priority=2,
            not_before=0,
            max_attempts=1,
            idempotency_key="K",
        )
        [(d, _)] = await store.apply_one(InsertDispatches([new], "dead-process", 1.0))
        claim = ClaimRun(dispatch_id=d, attempt=1, job_id=1, idempotency_key="K")
        assert await store.apply_one(ClaimRuns([claim], "dead-process", 2.0))
        [(_, _, action)] = await store.apply_one(RecoverOrphans(now=3.0, origin="next"))
        assert action == "replay"
        with sqlite3.connect(db_path) as conn:
            row = conn.execute(
                "SELECT idempotency_key, producer_key FROM dispatches WHERE id = ?", (d,)
            ).fetchone()
        assert row == ("K:replay2", "K")
        assert await store.apply_one(InsertDispatches([new], "producer", 4.0)) == [d]
    finally:
        await store.close()


def _old_file(path: str, version: int, dispatches: list[tuple[int, str | None, str]]) -> None:
    """A file at schema ``version`` holding dispatches ``(id, idempotency_key, status)`` of
    job 1, all without a slot."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for v in range(version):
            for statement in MIGRATIONS[v]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (v + 1,))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(
            "INSERT INTO jobs (id, name, executor, spec, created_at, updated_at)"
            """ VALUES (1, 'a', 'python', '{"name":"a","target":"ok"}', 0, 0)"""
        )
        conn.executemany(
            "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
            " not_before, max_attempts, idempotency_key, created_at, updated_at)"
            " VALUES (?, ?, 1, 'a', 'enqueue', ?, 2, 0, 1, ?, 0, 0)",
            [(d, d, status, key) for d, key, status in dispatches],
        )


async def test_an_old_file_with_reused_keys_migrates(db_path: str, work: Work) -> None:
    assert SCHEMA_VERSION > 4
    _old_file(
        db_path,
        4,
        [
            (1, "K", "dead"),  # older versions let K be used again after this ...
            (2, "K", "cancelled"),
            (3, "K:replay2", "done"),  # ... and this one holds K now (a replay)
            (4, "L", "dead"),
            (5, "L", "dead"),
            (6, "abc:replay1", "queued"),
            (7, None, "done"),
        ],
    )
    async with session(db_path, work) as rt:
        with sqlite3.connect(db_path) as conn:
            keys = dict(conn.execute("SELECT id, producer_key FROM dispatches"))
        assert keys == {1: None, 2: None, 3: "K", 4: None, 5: "L", 6: "abc", 7: None}
        assert await rt.enqueue("a", idempotency_key="K") == 3
        assert await rt.enqueue("a", idempotency_key="L") == 5
        assert await rt.enqueue("a", idempotency_key="abc") == 6
        with pytest.raises(sqlite3.IntegrityError), sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE dispatches SET producer_key = 'K' WHERE id = 1")
