"""The scheduler actor on its own: a real store and writer, a stub dispatcher mailbox.

What it must do: sleep until the earliest fire time of many jobs (no tick), commit
each due slot with the job's next fire time, tell the dispatcher, react to job
changes and outcomes, and never commit a (job, slot) twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from shepherd.actors.messages import (
    DispatcherMsg,
    Enqueued,
    Event,
    JobsChanged,
    Outcome,
    SchedulerMsg,
    SlotRecord,
)
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.actors.scheduler import Scheduler, SchedulerConfig
from shepherd.actors.scheduler.plan import error_backoff, slot_key
from shepherd.actors.writer import StoreWriter
from shepherd.runtime.jobs import save_op
from shepherd.store.models import JobRow, JobSpec, RetryPolicy, Seconds
from shepherd.store.ops import InsertDispatches, NewDispatch, RecordSlots, SlotFailed, SlotItem
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 6, 10, 12, 0, 30, tzinfo=UTC).timestamp()


class Harness:
    def __init__(self, store: SqliteStore, clock: FakeClock, path: str) -> None:
        self.path = path
        self.store = store
        self.clock = clock
        self.writer_mb: Mailbox[Any] = Mailbox("store", 1000)
        self.dispatcher_mb: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 1000)
        self.mailbox: Mailbox[SchedulerMsg] = Mailbox("scheduler", 1000)
        self.inbox = self.mailbox.address()
        self.events: list[Event] = []
        self.committed: list[tuple[float, list[float]]] = []
        self.scheduler = Scheduler(
            SchedulerConfig(instance="test", chunk=7),
            store=store,
            writer=self.writer_mb.address(),
            mailbox=self.mailbox,
            dispatcher=self.dispatcher_mb.address(),
            clock=clock,
            emit=self.events.append,
            observe=lambda at, slots: self.committed.append((at, slots)),
        )

    async def add(self, spec: JobSpec) -> JobRow:
        await self.store.apply_one(save_op(spec, self.clock.wall()))
        row = await self.store.job(spec.name)
        assert row is not None
        return row

    async def idle(self) -> None:
        """Wait until every task is blocked and no store work runs, then check that the
        scheduler is caught up: in receive, nothing due that it has not fired."""
        await self.clock.wait_idle()
        s = self.scheduler.statistics()
        due = s["next_due"] is not None and s["next_due"] <= self.clock.wall()
        assert s["idle"] and not due, s

    async def tell(self, msg: SchedulerMsg) -> None:
        """Send and wait until the scheduler took it (a message handed straight to a
        waiting receiver never shows in the inbox depth) and is idle again."""
        seen = self.mailbox.received
        await self.inbox.send(msg)
        await self.idle()
        assert self.mailbox.received > seen

    async def step_to(self, wall: float) -> None:
        await self.clock.set_wall_when_blocked(wall)
        await self.idle()

    def told(self) -> list[Any]:
        out = []
        while True:
            try:
                msg = self.dispatcher_mb.receive_nowait()
            except anyio.WouldBlock:
                return out
            out.append(msg)

    def enqueued(self) -> list[tuple[int, float | None]]:
        return [
            (e.job_id, e.slot) for m in self.told() if isinstance(m, Enqueued) for e in m.entries
        ]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    store = await SqliteStore.open(tmp_path / "s.db")
    clock = FakeClock(wall=T0)
    harness = Harness(store, clock, str(tmp_path / "s.db"))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(StoreWriter(store, harness.writer_mb).run)
            yield harness
            tg.cancel_scope.cancel()
    finally:
        await store.close()


@asynccontextmanager
async def running(h: Harness) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(h.scheduler.run)
        await h.idle()
        yield
        tg.cancel_scope.cancel()


def sql(h: Harness, statement: str) -> None:
    """Another connection changes the database behind the scheduler's back."""
    with sqlite3.connect(h.path) as conn:
        conn.execute(statement)


# -- timers: one sleep to the earliest of many ----------------------------------------


async def test_sleeps_until_the_earliest_of_many_jobs(h: Harness) -> None:
    rows = [await h.add(JobSpec(name=f"j{i}", every=Seconds(10.0 * (i + 1)))) for i in range(20)]
    async with running(h):
        await h.idle()
        assert h.scheduler.statistics()["next_due"] == T0 + 10.0
        loops = h.scheduler.counters["loops"]
        await h.step_to(T0 + 9.999)
        assert h.enqueued() == [] and h.scheduler.counters["loops"] == loops  # not woken
        await h.step_to(T0 + 60)
        # the six jobs due by now fire once each, at their latest slot (misfire skip:
        # the clock jumped 60 s, so the 10 s job's earlier slots are recorded missed)
        latest = [10.0 * (i + 1) * (60 // (10 * (i + 1))) for i in range(6)]  # own grid
        assert sorted(h.enqueued()) == [(r.id, T0 + t) for r, t in zip(rows, latest, strict=False)]
        assert h.scheduler.counters["missed"] == 5 + 2 + 1 + 0 + 0 + 0
        assert h.scheduler.statistics()["next_due"] == T0 + 70.0


async def test_many_due_jobs_commit_in_pipelined_chunks(h: Harness) -> None:
    for i in range(30):  # chunk=7 in the harness: five ops
        await h.add(JobSpec(name=f"m{i:02d}", cron="* * * * *"))
    async with running(h):
        await h.step_to(T0 + 30)
        assert len(h.enqueued()) == 30
        assert sum(len(s) for _, s in h.committed) == 30 and len(h.committed) == 5
        assert all(slots == [T0 + 30] * len(slots) for _, slots in h.committed)
        stored = await h.store.jobs()
        assert {r.next_run_at for r in stored} == {T0 + 90}


# -- job changes -----------------------------------------------------------------------


async def test_jobs_changed_reloads_only_those_jobs(h: Harness) -> None:
    row = await h.add(JobSpec(name="a", cron="* * * * *"))
    async with running(h):
        await h.idle()
        # disabled in the store: the scheduler forgets it when told
        off = msgspec.structs.replace(row.spec, enabled=False)
        await h.store.apply_one(save_op(off, h.clock.wall()))
        await h.tell(JobsChanged([row.id]))
        assert h.scheduler.statistics()["jobs"] == 0
        await h.step_to(T0 + 30)
        assert h.enqueued() == []
        b = await h.add(JobSpec(name="b", every=Seconds(5.0)))
        await h.tell(JobsChanged(None))
        await h.step_to(h.clock.wall() + 5)
        assert [job_id for job_id, _ in h.enqueued()] == [b.id]


async def test_a_concurrent_change_wins_over_a_planned_slot(h: Harness) -> None:
    row = await h.add(JobSpec(name="a", cron="* * * * *"))
    async with running(h):
        # another writer moves next_run_at and does not tell the scheduler
        sql(h, f"UPDATE jobs SET next_run_at = {T0 + 3600} WHERE id = {row.id}")
        await h.step_to(T0 + 30)  # the slot it believes in: compare-and-set fails
        assert h.scheduler.counters["stale"] == 1
        assert h.enqueued() == []
        assert h.scheduler.statistics()["next_due"] == T0 + 3600  # reloaded
        await h.step_to(T0 + 3600)
        assert h.enqueued() == [(row.id, T0 + 3600)]


# -- idempotent slots ------------------------------------------------------------------


async def test_record_slots_is_compare_and_set_and_slots_are_unique(h: Harness) -> None:
    row = await h.add(JobSpec(name="a", cron="* * * * *"))
    slot = row.next_run_at or 0
    new = NewDispatch(
        job_id=row.id,
        job_name="a",
        kind="schedule",
        priority=2,
        not_before=slot,
        max_attempts=1,
        idempotency_key=slot_key(row.id, slot),
        slot=slot,
    )
    item = SlotItem(
        job_id=row.id, job_name="a", expect_next=slot, next_run_at=slot + 60, dispatches=[new]
    )
    first = await h.store.apply_one(RecordSlots([item], "t", T0))
    assert first[0][0] is not None
    assert await h.store.apply_one(RecordSlots([item], "t", T0)) == [None]  # stale
    again = SlotItem(
        job_id=row.id, job_name="a", expect_next=slot + 60, next_run_at=slot + 120, dispatches=[new]
    )
    assert await h.store.apply_one(RecordSlots([again], "t", T0)) == [[None]]  # duplicate
    other = msgspec.structs.replace(new, idempotency_key="other-key")
    assert await h.store.apply_one(InsertDispatches([other], "t", T0)) == [None]
    ds = await h.store.dispatches(job="a")
    assert [d.slot for d in ds] == [slot]


# -- outcomes --------------------------------------------------------------------------


async def test_outcomes_drive_the_error_ladder_and_one_shot_jobs(h: Harness) -> None:
    cron = await h.add(JobSpec(name="c", cron="* * * * *"))
    once = await h.add(JobSpec(name="o", at="2024-06-10T12:00:40Z", delete_after_run=True))
    async with running(h):
        await h.step_to(T0 + 30)
        assert sorted(h.enqueued()) == [(cron.id, T0 + 30), (once.id, T0 + 10)]
        now = h.clock.wall()
        for n in (1, 2, 3):
            await h.tell(
                Outcome(
                    job_id=cron.id,
                    job="c",
                    dispatch_id=1,
                    outcome="error",
                    final=True,
                    slot=T0 + 30,
                    kind="schedule",
                    at=now,
                )
            )
            row = await h.store.job("c")
            assert row is not None and row.consecutive_errors == n
            assert row.next_run_at == max(T0 + 90, now + error_backoff(n))
        records = [e for e in h.events if isinstance(e, SlotRecord)]
        assert [(e.reason, e.slot) for e in records] == [
            ("backoff", T0 + 90 + 60 * k) for k in range(4)
        ]  # 12:02 … 12:05 < now + 300
        await h.tell(
            Outcome(
                job_id=once.id,
                job="o",
                dispatch_id=2,
                outcome="ok",
                final=True,
                slot=T0 + 10,
                kind="schedule",
                at=now,
            )
        )
        await h.idle()
        assert any(isinstance(m, JobsChanged) for m in h.told())
        assert await h.store.job("o") is None


async def test_restart_repairs_what_a_crash_left(h: Harness) -> None:
    once = await h.add(JobSpec(name="o", at="2024-06-10T12:00:40Z"))
    rec = await h.add(JobSpec(name="r", cron="*/5 * * * *"))
    async with running(h):
        await h.step_to(T0 + 10)
        assert h.enqueued() == [(once.id, T0 + 10)]
    # the one-shot's run ended while nobody listened (an orphan dead-lettered at start),
    # and the recurring job lost its next run
    sql(h, "UPDATE dispatches SET status = 'dead'")
    sql(h, f"UPDATE jobs SET next_run_at = NULL WHERE id = {rec.id}")
    async with running(h):
        assert h.scheduler.counters["finished"] == 1
        row = await h.store.job("o")
        assert row is not None and not row.spec.enabled and row.next_run_at is None
        r = await h.store.job("r")
        five = datetime(2024, 6, 10, 12, 5, tzinfo=UTC).timestamp()
        assert r is not None and r.next_run_at == five
        await h.step_to(five)
        assert h.enqueued() == [(rec.id, five)]


# -- one job whose slot cannot be stored never holds the others -------------------------

HUGE = 2**63  # past SQLite's 64-bit INTEGER: a value stored before the bounds existed


async def old_job(h: Harness, name: str) -> JobRow:
    """A job as stored before bounds: its attempts overflow when a dispatch is bound."""
    spec = JobSpec(name=name, cron="* * * * *", retry=RetryPolicy(max_attempts=HUGE))
    return await h.add(spec)


def slot_dispatch(row: JobRow, slot: float, max_attempts: int) -> NewDispatch:
    return NewDispatch(
        job_id=row.id,
        job_name=row.name,
        kind="schedule",
        priority=2,
        not_before=slot,
        max_attempts=max_attempts,
        idempotency_key=slot_key(row.id, slot),
        slot=slot,
    )


async def test_record_slots_fails_a_bad_item_alone(h: Harness) -> None:
    bad = await old_job(h, "bad")
    good = await h.add(JobSpec(name="good", cron="* * * * *"))
    slot = T0 + 30
    items = [
        SlotItem(
            job_id=row.id,
            job_name=row.name,
            expect_next=slot,
            next_run_at=slot + 60,
            dispatches=[slot_dispatch(row, slot, attempts)],
        )
        for row, attempts in ((bad, HUGE), (good, 3))
    ]
    failed, ok = await h.store.apply_one(RecordSlots(items, "t", T0))
    assert isinstance(failed, SlotFailed) and "OverflowError" in failed.error
    assert isinstance(ok, list) and ok[0] is not None
    rows = {r.name: r for r in await h.store.jobs()}
    assert rows["good"].next_run_at == slot + 60
    assert rows["bad"].next_run_at == slot  # rolled back: nothing of it was written
    assert [d.job_id for d in await h.store.dispatches()] == [good.id]


async def test_a_job_whose_slot_cannot_be_stored_does_not_hold_the_others(h: Harness) -> None:
    bad = await old_job(h, "bad")
    good = await h.add(JobSpec(name="good", cron="* * * * *"))
    assert bad.next_run_at == good.next_run_at == T0 + 30
    async with running(h):
        await h.step_to(T0 + 30)
        assert h.enqueued() == [(good.id, T0 + 30)]  # the first commit, not 1 s later
        s = h.scheduler.statistics()
        assert (s["slot_errors"], s["store_errors"]) == (1, 0)
        assert "bad" in s["last_error"] and "OverflowError" in s["last_error"]
        assert s["next_due"] == T0 + 90  # the bad job moved on too: no retry each second
        await h.step_to(T0 + 31)
        assert h.enqueued() == [] and h.scheduler.counters["slot_errors"] == 1
        await h.step_to(T0 + 90)
        assert h.enqueued() == [(good.id, T0 + 90)]
        assert h.scheduler.counters["slot_errors"] == 2  # once per slot of the bad job
    rows = {r.name: r for r in await h.store.jobs()}
    assert rows["good"].next_run_at == T0 + 150
    assert rows["bad"].next_run_at == T0 + 30  # none of its commits happened
    assert {d.job_id for d in await h.store.dispatches()} == {good.id}
