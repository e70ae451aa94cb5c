"""The store writer's ``commit_now``: a caller's small group commits in the caller's task
only while the writer serves and is idle, on a store that can commit without waiting;
otherwise nothing is written and the caller goes through the inbox. The dispatcher's
passes take it on SQLite; PostgreSQL never does."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Mailbox, Reply
from shepherd.actors.writer import QUIET, StoreMsg, StoreWriter, Write, write
from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.store.errors import StoreError
from shepherd.store.ops import CancelDispatch, InsertDispatches, NewDispatch, SaveJob, WriteOp
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def _insert(job_id: int) -> InsertDispatches:
    row = NewDispatch(
        job_id=job_id, job_name="a", kind="enqueue", priority=2, not_before=0.0, max_attempts=1
    )
    return InsertDispatches([row], "test", 1.0)


def _count(path: str) -> int:
    with sqlite3.connect(path) as conn:
        n: int = conn.execute("SELECT COUNT(*) FROM dispatches").fetchone()[0]
    return n


async def _job(store: SqliteStore) -> int:
    job_id: int = await store.apply_one(
        SaveJob("a", "python", True, b'{"name":"a","target":"ok"}', None, 1.0)
    )
    return job_id


async def _writer(
    store: SqliteStore, clock: FakeClock | None = None
) -> tuple[StoreWriter, Mailbox[StoreMsg], int]:
    """A writer on ``store`` (not yet serving), its mailbox, and a job's id."""
    job_id = await _job(store)
    mailbox: Mailbox[StoreMsg] = Mailbox("store", 16)
    return StoreWriter(store, mailbox, clock=clock), mailbox, job_id


async def test_an_idle_serving_writer_commits_in_the_callers_task(
    sqlite_store: SqliteStore, db_path: str
) -> None:
    writer, mailbox, job_id = await _writer(sqlite_store)
    assert writer.commit_now([_insert(job_id)]) is None  # not serving yet: nothing written
    assert _count(db_path) == 0
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        await anyio.lowlevel.checkpoint()  # the writer waits on its inbox
        results = writer.commit_now([_insert(job_id)])
        assert results is not None and len(results) == 1
        assert _count(db_path) == 1  # committed before commit_now returned
        stats = writer.statistics()
        assert (stats["batches"], stats["batches_now"], stats["ops"]) == (1, 1, 1)
        await write(mailbox.address(), _insert(job_id))  # the inbox path still serves
        assert (writer.batches, writer.batches_now) == (2, 1)
        tg.cancel_scope.cancel()
    assert writer.commit_now([_insert(job_id)]) is None  # stopped serving
    assert _count(db_path) == 2


async def test_a_waiting_write_or_a_commit_in_flight_sends_the_group_to_the_inbox(
    sqlite_store: SqliteStore, db_path: str
) -> None:
    writer, mailbox, job_id = await _writer(sqlite_store)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            await anyio.lowlevel.checkpoint()
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            done = anyio.Event()

            async def first() -> None:
                await write(mailbox.address(), _insert(job_id))
                done.set()

            tg.start_soon(first)
            while not sqlite_store._hops:  # the writer's commit waits on its thread
                await anyio.lowlevel.checkpoint()
            assert writer.commit_now([_insert(job_id)]) is None  # busy: not ahead of it
            mailbox.address().tell(Write(_insert(job_id), Reply()))
            assert mailbox.depth == 1
            assert writer.commit_now([_insert(job_id)]) is None  # a write is waiting
            other.execute("COMMIT")
            with anyio.fail_after(10):
                await done.wait()
                while mailbox.depth or writer._busy:
                    await anyio.lowlevel.checkpoint()
            assert writer.commit_now([_insert(job_id)]) is not None  # idle again
            tg.cancel_scope.cancel()
    finally:
        other.close()
    assert _count(db_path) == 3 and writer.batches_now == 1


async def test_inserts_keep_to_the_inbox_for_quiet_after_an_insert(
    sqlite_store: SqliteStore, db_path: str
) -> None:
    """Producers writing share commits: an insert through the inbox keeps every group to
    the inbox for ``QUIET``, an insert committed now keeps the next insert to it."""
    clock = FakeClock()
    writer, mailbox, job_id = await _writer(sqlite_store, clock)
    other = CancelDispatch(10**6, 1.0)  # of the dispatch path, not an insert
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        await anyio.lowlevel.checkpoint()
        assert writer.commit_now([_insert(job_id)]) is not None  # no insert before it
        assert writer.commit_now([_insert(job_id)]) is None  # an insert just now
        assert writer.commit_now([other]) is not None  # not an insert: inserts only now
        clock.advance(2 * QUIET)
        assert writer.commit_now([_insert(job_id)]) is not None
        await write(mailbox.address(), _insert(job_id))  # a producer through the inbox
        assert writer.commit_now([other]) is None
        assert writer.commit_now([_insert(job_id)]) is None
        clock.advance(2 * QUIET)
        assert writer.commit_now([other]) is not None
        tg.cancel_scope.cancel()
    assert _count(db_path) == 3 and (writer.batches, writer.batches_now) == (5, 4)


class FailingStore:
    """A store whose every commit fails as a whole (a full disk, say)."""

    def apply_now(self, ops: Sequence[WriteOp]) -> list[Any] | None:
        raise StoreError("disk full")

    async def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        raise StoreError("disk full")


async def test_a_failed_commit_now_raises_and_marks_the_writer_failing() -> None:
    mailbox: Mailbox[StoreMsg] = Mailbox("store", 16)
    writer = StoreWriter(FailingStore(), mailbox)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        await anyio.lowlevel.checkpoint()
        with pytest.raises(StoreError, match="disk full"):
            writer.commit_now([_insert(1)])
        stats = writer.statistics()
        assert stats["failing"] and stats["failures"] == 1 and stats["last_error"] == "disk full"
        assert (stats["batches"], stats["batches_now"]) == (0, 0)
        tg.cancel_scope.cancel()


async def ok(ctx: RunContext) -> int:
    n: int = ctx.payload["n"]
    return n


@pytest.mark.engines("sqlite", "postgresql")
async def test_enqueues_and_the_dispatchers_passes_commit_now_on_sqlite_only(
    db_path: str,
) -> None:
    async with Runtime.open(Config(database=db_path), targets={"ok": ok}) as rt:
        await rt.add_job(JobSpec(name="ok", target="ok"))
        for n in range(5):  # one at a time: the writer is idle at each pass
            final = await rt.wait(await rt.enqueue("ok", {"n": n}), timeout=10)
            assert (final.status, final.result) == ("done", n)
        stats = rt.statistics()["store"]
    if db_path.startswith("postgresql"):
        assert stats["batches_now"] == 0  # every commit is a round trip: the inbox
    else:
        assert stats["batches_now"] >= 5  # a claim (and a finish) per job, none sent
        assert stats["batches_now"] <= stats["batches"]


async def test_producers_enqueueing_at_once_still_share_commits(db_path: str) -> None:
    """The first of sixteen concurrent enqueues commits in its own task; the rest come
    within ``QUIET`` (the fake clock does not move) and are committed together."""
    clock = FakeClock()
    cfg = Config(database=db_path, shutdown_grace=0)
    async with Runtime.open(cfg, clock=clock, targets={"ok": ok}) as rt:
        await rt.add_job(JobSpec(name="ok", target="ok"))
        before = rt.statistics()["store"]
        async with anyio.create_task_group() as tg:
            for n in range(16):
                tg.start_soon(partial(rt.enqueue, "ok", {"n": n}, delay=3600))  # stays queued
        stats = rt.statistics()["store"]
        assert len(await rt.dispatches(status="queued")) == 16
    assert stats["batches_now"] - before["batches_now"] == 1
    assert stats["largest_batch"] >= 15  # the other fifteen in one commit
