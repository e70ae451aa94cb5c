"""The pruner actor on its own: a real SQLite file and store writer, a fake clock.

What it must do: run nothing before its first pass is due, then prune every rule in
bounded batches through the writer; checkpoint the WAL on its own timer; answer a
``PruneNow``; stop between batches on ``Stop``; survive a failing store and try again
at the next pass; say what it pruned (statistics and one INFO line).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Address, Mailbox, Reply
from shepherd.actors.pruner import PruneNow, Pruner, PrunerMsg, Stop
from shepherd.actors.retention import RetentionConfig
from shepherd.actors.writer import StoreMsg, StoreWriter
from shepherd.store.errors import DiskFull, StoreError
from shepherd.store.models import Seconds
from shepherd.store.sqlite import SqliteStore
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

DAY = 86400.0
T0 = 1_700_000_000.0


class Harness:
    def __init__(self, store: SqliteStore, pruner: Pruner, inbox: Address[PrunerMsg]) -> None:
        self.store, self.pruner, self.inbox = store, pruner, inbox
        self.stopped = anyio.Event()

    async def prune_now(self) -> dict[str, int]:
        reply: Reply[dict[str, int]] = Reply()
        self.inbox.tell(PruneNow(reply))
        return await reply.wait()


@asynccontextmanager
async def harness(
    db_path: str, clock: FakeClock, cfg: RetentionConfig, *, failing_writer: bool = False
) -> AsyncIterator[Harness]:
    store = await SqliteStore.open(db_path)
    writer_mb: Mailbox[StoreMsg] = Mailbox("store", 100)
    mailbox: Mailbox[PrunerMsg] = Mailbox("pruner", 16)
    pruner = Pruner(
        cfg,
        writer=writer_mb.address(),
        mailbox=mailbox,
        clock=clock,
        store=store,
        checkpoint_every=2.0,
    )
    h = Harness(store, pruner, mailbox.address())

    async def serve_pruner() -> None:
        await pruner.run()
        h.stopped.set()

    async def refuse_writes() -> None:
        async for w in writer_mb:
            w.reply.fail(DiskFull("disk is full"))

    try:
        async with anyio.create_task_group() as tg:
            if failing_writer:
                tg.start_soon(refuse_writes)
            else:
                await tg.start(StoreWriter(store, writer_mb).run)
            tg.start_soon(serve_pruner)
            await clock.wait_idle()
            yield h
            tg.cancel_scope.cancel()
    finally:
        await store.close()


@pytest.fixture
async def db(db_path: str) -> str:
    """A fresh shepherd database file (schema migrated)."""
    await (await SqliteStore.open(db_path)).close()
    return db_path


def fill(db_path: str, *, runs: int, done: int, jobs: int = 2) -> None:
    """``runs`` finished runs spread over ``jobs`` jobs, ``done`` dispatches ended 8 days
    before T0, and a newest queued dispatch (the highest id and seq stay anyway)."""
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO runs (id, job_id, job_name, attempt, status, started_at, finished_at)"
            " VALUES (?, ?, 'j', 1, 'ok', ?, ?)",
            [(i, i % jobs, T0 - DAY, T0 - DAY) for i in range(1, runs + 1)],
        )
        conn.executemany(
            "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
            " not_before, max_attempts, created_at, updated_at)"
            " VALUES (?, ?, 0, 'j', 'enqueue', ?, 2, 0, 3, ?, ?)",
            [(i, i, "done", T0 - 8 * DAY, T0 - 8 * DAY) for i in range(1, done + 1)]
            + [(done + 1, done + 1, "queued", T0, T0)],
        )


def count(db_path: str, table: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_the_first_pass_prunes_every_rule_in_batches(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(wall=T0)
    fill(db, runs=60, done=25)
    cfg = RetentionConfig(runs_per_job=10, batch_size=7)
    caplog.set_level(logging.INFO, logger="shepherd.pruner")
    async with harness(db, clock, cfg) as h:
        await clock.advance_when_blocked(59)
        assert h.pruner.passes == 0 and count(db, "runs") == 60  # not due yet
        await clock.advance_when_blocked(1)
        await eventually(lambda: h.pruner.passes == 1, what="the first pass")
        stats = h.pruner.statistics()
        assert stats["pruned"] == {
            "keys": 0,
            "runs": 40,
            "dispatches": 25,
            "dead": 0,
            "messages": 0,
            "deliveries": 0,
            "approvals": 0,
            "groups": 0,
        }
        assert count(db, "runs") == 20 and count(db, "dispatches") == 1
        assert stats["batches"] >= (40 + 25) / 7  # at most 7 rows per write op
        assert stats["last_pass"]["at"] == T0 + 60
        assert "pruned 40 runs, 25 dispatches in" in caplog.text
        # nothing left: the next pass, one interval later, deletes nothing and logs nothing
        caplog.clear()
        await clock.advance_when_blocked(float(cfg.interval))
        await eventually(lambda: h.pruner.passes == 2, what="the second pass")
        assert h.pruner.statistics()["last_pass"]["pruned"]["runs"] == 0
        assert "pruned" not in caplog.text


async def test_the_wal_checkpoint_runs_on_its_own_timer(db: str) -> None:
    clock = FakeClock(wall=T0)
    async with harness(db, clock, RetentionConfig()) as h:
        assert h.store.checkpoints == 0
        for n in (1, 2, 3):
            await clock.advance_when_blocked(2)
            await eventually(lambda n=n: h.store.checkpoints == n, what=f"checkpoint {n}")
        assert h.pruner.statistics()["checkpoints"] == 3 and h.pruner.passes == 0


class _Log:
    """A store whose log gains the frames listed, one entry per checkpoint."""

    def __init__(self, *gains: int) -> None:
        self.gains, self.at = list(gains), list[float]()

    async def checkpoint(self) -> int:
        self.at.append(self.clock.wall())
        return self.gains.pop(0) if self.gains else 0

    clock: FakeClock


async def test_while_the_log_moves_the_next_checkpoint_comes_soon() -> None:
    """A checkpoint that found new frames is followed 50 ms later, so each flush (and
    the stall it gives a commit) stays small; a quiet log waits the whole interval."""
    clock = FakeClock(wall=T0)
    log = _Log(0, 500, 700, 0, 300)
    log.clock = clock
    pruner = Pruner(
        RetentionConfig(), writer=Mailbox[StoreMsg]("store", 1).address(),
        mailbox=Mailbox[PrunerMsg]("pruner", 4), clock=clock, store=log, checkpoint_every=2.0,
    )  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(pruner.run)
        while len(log.at) < 6:
            await clock.wait_idle()
            deadline = clock.next_deadline()
            assert deadline is not None
            await clock.advance_when_blocked(deadline - clock.now())
        tg.cancel_scope.cancel()
    gaps = [round(b - a, 3) for a, b in zip(log.at, log.at[1:], strict=False)]
    assert gaps[:5] == [2.0, 0.05, 0.05, 2.0, 0.05]
    assert pruner.statistics()["checkpoint_frames"] == 1500


async def test_prune_now_answers_with_what_it_pruned(db: str) -> None:
    clock = FakeClock(wall=T0)
    fill(db, runs=5, done=3, jobs=1)
    async with harness(db, clock, RetentionConfig(runs_per_job=2)) as h:
        got = await h.prune_now()
        assert (got["runs"], got["dispatches"]) == (3, 3)
        assert h.pruner.passes == 1
        assert (await h.prune_now())["runs"] == 0  # a second one finds nothing left


async def test_stop_ends_a_pass_after_the_current_batch(db: str) -> None:
    clock = FakeClock(wall=T0)
    fill(db, runs=50, done=0, jobs=1)
    with sqlite3.connect(db) as conn:  # 12 expired keys: the pass's first rule
        conn.executemany(
            "INSERT INTO idempotency (key, job_id, status, claimed_at, expires_at)"
            " VALUES (?, 0, 'released', 0, ?)",
            [(f"k{i}", T0 - 1) for i in range(12)],
        )
    async with harness(db, clock, RetentionConfig(runs_per_job=1, batch_size=5)) as h:
        reply: Reply[dict[str, int]] = Reply()
        h.inbox.tell(PruneNow(reply))
        h.inbox.tell(Stop())  # waiting in the inbox: seen after the first batch
        with anyio.fail_after(10):
            await h.stopped.wait()
        assert (await reply.wait())["keys"] == 5
        assert h.pruner.batches == 1
        assert count(db, "idempotency") == 7 and count(db, "runs") == 50


async def test_a_failing_store_ends_the_pass_and_the_next_one_tries_again(
    db: str,
) -> None:
    clock = FakeClock(wall=T0)
    cfg = RetentionConfig(interval=Seconds(10))
    async with harness(db, clock, cfg, failing_writer=True) as h:
        with pytest.raises(StoreError, match="disk is full"):
            await h.prune_now()
        assert h.pruner.statistics()["last_error"] == "disk is full"
        await clock.advance_when_blocked(10)
        await eventually(lambda: h.pruner.passes == 2, what="the next pass")
        assert not h.stopped.is_set()  # the actor goes on


def fill_workflows(db_path: str) -> None:
    """Approvals 1-4 resolved 31 days before T0 (approved, rejected, timed out, and one
    whose dispatch still waits), 5 pending, 6 rejected a day ago, 7 rejected long ago
    (the newest row); groups 1-3 ended 31 days ago, 4 open, 5 ended long ago (newest)."""
    old = T0 - 31 * DAY
    with sqlite3.connect(db_path) as conn:
        approvals = [
            ("approved", old, "cancelled"), ("rejected", old, "cancelled"),
            ("timed_out", old, "cancelled"), ("approved", old, "awaiting_approval"),
            ("pending", None, "awaiting_approval"), ("rejected", T0 - DAY, "cancelled"),
            ("rejected", old, "cancelled"),
        ]  # fmt: skip
        for i, (status, resolved, waits) in enumerate(approvals, start=1):
            conn.execute(
                "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
                " not_before, max_attempts, created_at, updated_at)"
                " VALUES (?, ?, 0, 'j', 'enqueue', ?, 2, 0, 3, ?, ?)",
                (i, i, waits, T0, T0),
            )
            conn.execute(
                "INSERT INTO approvals (id, dispatch_id, job_id, job_name, status, on_timeout,"
                " requested_at, deadline, resolved_at) VALUES (?, ?, 0, 'j', ?, 'reject', ?, ?, ?)",
                (i, i, status, old, old + 60, resolved),
            )
        groups = [("completed", old), ("failed", old), ("completed", old), ("open", None),
                  ("failed", old)]  # fmt: skip
        for i, (status, ended) in enumerate(groups, start=1):
            conn.execute(
                "INSERT INTO task_groups (id, name, status, timeout, heartbeat_window,"
                " created_at, updated_at, completed_at) VALUES (?, ?, ?, 600, 300, ?, ?, ?)",
                (i, f"g{i}", status, old, old, ended),
            )
            conn.executemany(
                "INSERT INTO task_group_members (group_id, pos, label) VALUES (?, ?, ?)",
                [(i, pos, f"m{pos}") for pos in range(2)],
            )


def ids(db_path: str, sql: str) -> list[int]:
    with sqlite3.connect(db_path) as conn:
        return [int(r[0]) for r in conn.execute(sql)]


async def test_resolved_approvals_and_ended_groups_go_after_30_days(db: str) -> None:
    clock = FakeClock(wall=T0)
    fill_workflows(db)
    async with harness(db, clock, RetentionConfig(batch_size=2)) as h:
        await clock.advance_when_blocked(60)  # the first pass
        await eventually(lambda: h.pruner.passes == 1, what="the first pass")
        pruned = h.pruner.statistics()["pruned"]
        assert (pruned["approvals"], pruned["groups"]) == (3, 3)
        assert ids(db, "SELECT id FROM approvals ORDER BY id") == [4, 5, 6, 7]
        assert ids(db, "SELECT id FROM task_groups ORDER BY id") == [4, 5]
        members = "SELECT DISTINCT group_id FROM task_group_members ORDER BY group_id"
        assert ids(db, members) == [4, 5]
        # a day later the approval rejected a day before T0 is still inside its 30 days
        await clock.advance_when_blocked(float(RetentionConfig().interval))
        await eventually(lambda: h.pruner.passes == 2, what="the second pass")
        assert ids(db, "SELECT id FROM approvals ORDER BY id") == [4, 5, 6, 7]


async def test_zero_keeps_approvals_and_groups_forever(db: str) -> None:
    clock = FakeClock(wall=T0)
    fill_workflows(db)
    cfg = RetentionConfig(approvals_max_age=Seconds(0), groups_max_age=Seconds(0))
    async with harness(db, clock, cfg) as h:
        got = await h.prune_now()
        assert (got["approvals"], got["groups"]) == (0, 0)
        assert count(db, "approvals") == 7 and count(db, "task_groups") == 5
