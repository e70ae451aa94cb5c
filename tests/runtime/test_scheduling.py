"""Scheduling through the embedded Runtime: cron slots, overlap, misfire after downtime,
DST, restarts, one-shot jobs, pools, the error ladder and bad input. Fake clock, real
SQLite files; the scheduler, dispatcher and store are the real ones."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from shepherd.actors.ingest import send_wake
from shepherd.actors.messages import OutcomeEvent
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.scheduler.plan import slot_key
from shepherd.runtime import (
    Config,
    ConfigError,
    JobSpec,
    NotFound,
    RetryPolicy,
    RunContext,
    Runtime,
)
from shepherd.runtime.jobs import save_op
from shepherd.store.factory import open_store
from shepherd.store.models import Dispatch
from shepherd.store.ops import InsertDispatches, NewDispatch
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

T0 = datetime(2024, 6, 10, 12, 0, 30, tzinfo=UTC).timestamp()  # 30 s past a minute
MIN = 60.0
LEAD = 2.0  # Config.schedule_lead's default
ONE = RetryPolicy(max_attempts=1)


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Runs:
    """Python targets: ``block`` waits until released (per dispatch), ``fail`` fails
    while ``failing`` is set; both record what ran and the peak concurrency."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []
        self.running = 0
        self.peak = 0
        self.failing = True
        self._gates: dict[int, anyio.Event] = {}

    def gate(self, dispatch_id: int) -> anyio.Event:
        return self._gates.setdefault(dispatch_id, anyio.Event())

    def release(self, dispatch_id: int | None = None) -> None:
        for key, gate in list(self._gates.items()):
            if dispatch_id is None or key == dispatch_id:
                gate.set()

    async def block(self, ctx: RunContext) -> None:
        self.started.append((ctx.job.name, ctx.dispatch_id))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gate(ctx.dispatch_id).wait()
        finally:
            self.running -= 1

    async def noop(self, ctx: RunContext) -> None:
        self.started.append((ctx.job.name, ctx.dispatch_id))

    async def block_fail(self, ctx: RunContext) -> None:
        await self.block(ctx)
        raise RuntimeError("failed late")

    async def fail(self, ctx: RunContext) -> None:
        self.started.append((ctx.job.name, ctx.dispatch_id))
        if self.failing:
            raise RuntimeError("agent gateway said no")


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=T0)


@pytest.fixture
def session(db_path: str, clock: FakeClock, runs: Runs) -> Any:
    @asynccontextmanager
    async def open_(**kw: Any) -> AsyncIterator[Runtime]:
        cfg = Config(database=db_path, shutdown_grace=0, **kw)
        targets = {
            "block": runs.block,
            "block_fail": runs.block_fail,
            "noop": runs.noop,
            "fail": runs.fail,
        }
        async with Runtime.open(cfg, clock=clock, targets=targets) as rt:
            await scheduler_idle(rt, clock)
            yield rt

    return open_


def job(name: str, target: str = "noop", **kw: Any) -> JobSpec:
    kw.setdefault("timeout", 86400.0)
    return JobSpec(name=name, target=target, **kw)


async def scheduler_idle(rt: Runtime, clock: FakeClock) -> None:
    """Wait until every task is blocked and no store work runs; the scheduler then waits
    for a time after now with nothing left to do."""
    await clock.wait_idle()
    s = rt.statistics()["scheduler"]
    due = s["next_due"] is not None and s["next_due"] <= clock.wall()
    assert s["idle"] and not due, s


async def step_to(rt: Runtime, clock: FakeClock, wall: float) -> None:
    await clock.set_wall_when_blocked(wall)
    await scheduler_idle(rt, clock)


async def schedule_dispatches(rt: Runtime, name: str) -> list[Dispatch]:
    ds = [d for d in await rt.dispatches(job=name, limit=1000) if d.kind == "schedule"]
    return sorted(ds, key=lambda d: d.slot or 0.0)


async def count(rt: Runtime, name: str, n: int, *, status: str | None = None) -> None:
    async def ok() -> bool:
        ds = await schedule_dispatches(rt, name)
        return len([d for d in ds if status is None or d.status == status]) == n

    await eventually(ok, what=f"{n} {status or ''} dispatches of {name}")


async def skipped(rt: Runtime, name: str) -> list[tuple[str | None, Any]]:
    rows = await rt.runs(job=name, status="skipped", limit=1000)
    return sorted((r.reason, (r.details or {}).get("slot")) for r in rows)


# -- cron fires exactly at its slots ---------------------------------------------------


async def test_cron_fires_exactly_at_each_slot(session: Any, clock: FakeClock) -> None:
    """Each slot's dispatch is committed ``schedule_lead`` (2 s) ahead, due at the slot:
    it starts at the slot, not before."""
    async with session() as rt:
        row = await rt.add_job(job("minutely", cron="* * * * *"))
        first = T0 + 30.0
        assert row.next_run_at == first
        assert await rt.next_fires("minutely", 3) == [first, first + MIN, first + 2 * MIN]
        for i in range(5):
            slot = first + i * MIN
            await step_to(rt, clock, slot - LEAD - 0.5)  # before the lead: nothing
            await count(rt, "minutely", i)
            await step_to(rt, clock, slot - LEAD)  # committed ahead
            await count(rt, "minutely", 1, status="queued")
            await step_to(rt, clock, slot - 0.01)  # not started before its slot
            await count(rt, "minutely", 1, status="queued")
            assert (await rt.get_job("minutely")).next_run_at == slot + MIN
            await step_to(rt, clock, slot)
            await count(rt, "minutely", i + 1, status="done")
        ds = await schedule_dispatches(rt, "minutely")
        assert [d.slot for d in ds] == [first + i * MIN for i in range(5)]
        assert [d.not_before for d in ds] == [d.slot for d in ds]
        assert [d.idempotency_key for d in ds] == [slot_key(row.id, d.slot or 0) for d in ds]
        assert all(d.created_at == (d.slot or 0) - LEAD for d in ds)  # committed ahead
        runs = await rt.runs(job="minutely", limit=10)
        assert sorted(r.started_at for r in runs) == [d.slot for d in ds]  # at the slot
        after = await rt.get_job("minutely")
        assert after.next_run_at == first + 5 * MIN
        assert (after.last_status, after.consecutive_errors) == ("ok", 0)
        assert await skipped(rt, "minutely") == []


async def test_no_lead_commits_at_the_slot(session: Any, clock: FakeClock) -> None:
    async with session(schedule_lead=0) as rt:
        await rt.add_job(job("minutely", cron="* * * * *"))
        first = T0 + 30.0
        for i in range(3):
            await step_to(rt, clock, first + i * MIN - 0.5)  # just before: nothing
            await count(rt, "minutely", i)
            await step_to(rt, clock, first + i * MIN)
            await count(rt, "minutely", i + 1, status="done")
        ds = await schedule_dispatches(rt, "minutely")
        assert all(d.created_at == d.slot for d in ds)  # committed at the slot


async def test_a_changed_or_disabled_job_withdraws_its_slot_committed_ahead(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    """A slot committed ahead is withdrawn in the transaction that changes the job's
    schedule or disables it: nothing runs for it and no skipped run is recorded; the
    job is planned again from its new state (a slot the new schedule keeps is committed
    again, once)."""
    async with session() as rt:
        await rt.add_job(job("a", cron="* * * * *"))
        await rt.add_job(job("b", cron="* * * * *"))
        await rt.add_job(job("c", cron="* * * * *"))
        await rt.add_job(job("d", cron="* * * * *"))
        slot = T0 + 30.0
        await step_to(rt, clock, slot - 1.0)
        for name in "abcd":
            await count(rt, name, 1, status="queued")
        async with rt.subscribe(OutcomeEvent) as events:
            await rt.disable("a")  # disabled: withdrawn, no run
            await rt.update_job("b", cron="*/5 * * * *")  # moved: withdrawn, next at 12:05
            await rt.update_job("c", cron="*/1 * * * *")  # same slots: committed again
            await rt.update_job("d", priority="high")  # schedule kept: the slot stays
            await scheduler_idle(rt, clock)
            ended = []
            with contextlib.suppress(anyio.WouldBlock):
                while True:
                    ended.append(events.receive_nowait())  # type: ignore[attr-defined]
        # each end heard as any other, with the reason the store wrote
        why = f"withdrawn before its slot {_iso(slot)}: the job changed"
        assert sorted((e.job, e.status, e.final, e.error) for e in ended) == [
            (name, "cancelled", True, why) for name in "abc"
        ]
        assert (await rt.get_job("b")).next_run_at == ts("2024-06-10T12:05:00Z")
        await step_to(rt, clock, slot)
        await count(rt, "c", 1, status="done")
        await count(rt, "d", 1, status="done")

        async def states(name: str) -> list[tuple[str, float | None]]:
            return [(d.status, d.slot) for d in await schedule_dispatches(rt, name)]

        withdrawn = ("cancelled", None)  # its slot cleared: free for the new schedule
        assert await states("a") == [withdrawn]
        assert await states("b") == [withdrawn]
        assert await states("c") == [withdrawn, ("done", slot)]
        assert await states("d") == [("done", slot)]
        for name in "abcd":
            assert await skipped(rt, name) == []
        assert sorted(name for name, _ in runs.started) == ["c", "d"]


# -- overlap policies --------------------------------------------------------------------


async def test_overlap_skip_records_the_skipped_slot(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    async with session() as rt:
        await rt.add_job(job("s", "block", cron="* * * * *", overlap="skip"))
        await step_to(rt, clock, T0 + 30)
        await eventually(lambda: runs.running == 1)
        await step_to(rt, clock, T0 + 90)
        await count(rt, "s", 1, status="done")
        assert await skipped(rt, "s") == [("skipped-overlap", None)]
        ds = await schedule_dispatches(rt, "s")
        assert [(d.slot, d.status, d.outcome) for d in ds] == [
            (T0 + 30, "running", None),
            (T0 + 90, "done", "skipped"),
        ]
        runs.release()
        await count(rt, "s", 2, status="done")
        assert runs.peak == 1


async def test_overlap_queue_is_bounded_by_max_queued(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    async with session() as rt:
        await rt.add_job(job("q", "block", cron="* * * * *", overlap="queue", max_queued=1))
        for k in range(3):
            await step_to(rt, clock, T0 + 30 + k * MIN)
        await count(rt, "q", 3)
        assert await skipped(rt, "q") == [("queue-full", None)]
        ds = await schedule_dispatches(rt, "q")
        assert [d.status for d in ds] == ["running", "queued", "done"]
        runs.release(ds[0].id)
        await eventually(lambda: len(runs.started) == 2, what="the queued slot to start")
        assert runs.started[1] == ("q", ds[1].id)
        runs.release()
        await count(rt, "q", 3, status="done")
        assert runs.peak == 1


async def test_overlap_allow_runs_concurrently(session: Any, clock: FakeClock, runs: Runs) -> None:
    async with session() as rt:
        await rt.add_job(job("a", "block", cron="* * * * *", overlap="allow"))
        for k in range(3):
            await step_to(rt, clock, T0 + 30 + k * MIN)
        await eventually(lambda: runs.running == 3, what="three concurrent runs")
        runs.release()
        await count(rt, "a", 3, status="done")


async def test_overlap_replace_cancels_the_running_run(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    async with session() as rt:
        await rt.add_job(job("r", "block", cron="* * * * *", overlap="replace"))
        await step_to(rt, clock, T0 + 30)
        await eventually(lambda: runs.running == 1)
        await step_to(rt, clock, T0 + 90)
        await eventually(lambda: len(runs.started) == 2 and runs.running == 1)
        first, second = await schedule_dispatches(rt, "r")
        assert (first.status, first.outcome) == ("cancelled", "cancelled")
        assert second.status == "running"
        assert [r.status for r in await rt.runs(dispatch_id=first.id)] == ["cancelled"]
        runs.release()
        await count(rt, "r", 1, status="done")


# -- misfire policies after downtime -------------------------------------------------------


@pytest.mark.parametrize(
    ("misfire", "ran", "missed"),
    [
        # down from 12:00:30 to 12:05:30: the slots 12:01 … 12:05 were due meanwhile
        ("skip", [5], [1, 2, 3, 4]),  # the latest is on time (30 s late): it runs
        ("run_once", [5], [1, 2, 3, 4]),  # one run stands for all of them
        ("run_all", [3, 4, 5], [1, 2]),  # those within catch_up_window = 3 min
    ],
)
async def test_misfire_policy_after_downtime(
    session: Any, clock: FakeClock, misfire: str, ran: list[int], missed: list[int]
) -> None:
    slot = [T0 - 30 + k * MIN for k in range(8)]  # slot[k] = 12:0k:00
    async with session() as rt:
        await rt.add_job(job("m", cron="* * * * *", misfire=misfire, catch_up_window=180.0))
    clock.set_wall(T0 + 5 * MIN)  # the process is down meanwhile
    async with session() as rt:
        await count(rt, "m", len(ran), status="done")
        ds = await schedule_dispatches(rt, "m")
        assert [d.slot for d in ds] == [slot[k] for k in ran]
        assert await skipped(rt, "m") == [("missed", slot[k]) for k in missed]
        assert (await rt.get_job("m")).next_run_at == slot[6]
        await step_to(rt, clock, slot[6])  # and it is back on its schedule
        await count(rt, "m", len(ran) + 1, status="done")


@pytest.mark.parametrize(("misfire", "runs_after"), [("skip", 0), ("run_once", 1)])
async def test_late_slots_skip_or_run_once(
    session: Any, clock: FakeClock, misfire: str, runs_after: int
) -> None:
    async with session() as rt:
        await rt.add_job(job("hourly", cron="0 * * * *", misfire=misfire))
    clock.set_wall(ts("2024-06-10T15:30:00Z"))  # 13:00, 14:00, 15:00 missed; 15:00 30 min late
    async with session() as rt:
        await count(rt, "hourly", runs_after, status="done")
        missed = [ts(f"2024-06-10T{h}:00:00Z") for h in (13, 14, 15)][: 3 - runs_after]
        assert await skipped(rt, "hourly") == [("missed", s) for s in missed]
        assert (await rt.get_job("hourly")).next_run_at == ts("2024-06-10T16:00:00Z")


async def test_run_all_outside_the_window_is_recorded_not_dropped(
    session: Any, clock: FakeClock
) -> None:
    async with session() as rt:
        await rt.add_job(job("h", every=600.0, misfire="run_all", catch_up_window=1800.0))
    clock.set_wall(T0 + 3 * 3600 + 30)  # down three hours: 18 slots due
    async with session() as rt:
        await count(rt, "h", 3, status="done")  # the ones in the last 30 minutes
        records = await skipped(rt, "h")
        assert len(records) == 15 and {r for r, _ in records} == {"missed"}


# -- DST through the actor ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "cron", "start", "fires", "never"),
    [
        # spring-forward gap: 02:30 does not exist → once at 03:00 local
        (
            "America/New_York",
            "30 2 * * *",
            "2024-03-09T12:00:00+00:00",
            ["2024-03-10T07:00:00+00:00", "2024-03-11T06:30:00+00:00"],
            None,
        ),
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2024-03-30T12:00:00+00:00",
            ["2024-03-31T01:00:00+00:00", "2024-04-01T00:30:00+00:00"],
            None,
        ),
        # fall-back overlap: 01:30 / 02:30 happen twice → once, at the first
        (
            "America/New_York",
            "30 1 * * *",
            "2024-11-02T12:00:00+00:00",
            ["2024-11-03T05:30:00+00:00", "2024-11-04T06:30:00+00:00"],
            "2024-11-03T06:30:00+00:00",
        ),
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2024-10-26T12:00:00+00:00",
            ["2024-10-27T00:30:00+00:00", "2024-10-28T01:30:00+00:00"],
            "2024-10-27T01:30:00+00:00",
        ),
        # an interval expression keeps its real cadence: 01:00 EDT and 01:00 EST both fire
        (
            "America/New_York",
            "0 * * * *",
            "2024-11-03T04:30:00+00:00",
            ["2024-11-03T05:00:00+00:00", "2024-11-03T06:00:00+00:00"],
            None,
        ),
    ],
)
async def test_dst_transitions_fire_once(
    db_path: str,
    runs: Runs,
    tz: str,
    cron: str,
    start: str,
    fires: list[str],
    never: str | None,
) -> None:
    clock = FakeClock(wall=ts(start))
    cfg = Config(database=db_path, shutdown_grace=0)
    async with Runtime.open(cfg, clock=clock, targets={"noop": runs.noop}) as rt:
        await rt.add_job(job("dst", cron=cron, tz=tz))
        for i, when in enumerate(fires):
            row = await rt.get_job("dst")
            assert row.next_run_at == ts(when)
            await step_to(rt, clock, ts(when))
            await count(rt, "dst", i + 1)
            if i == 0 and never is not None:
                await step_to(rt, clock, ts(never))  # the repeated wall time again
                await count(rt, "dst", 1)
        ds = await schedule_dispatches(rt, "dst")
        assert [d.slot for d in ds] == [ts(w) for w in fires]
        assert await skipped(rt, "dst") == []


# -- restarts and clock steps never duplicate a slot ----------------------------------------


async def test_stop_between_commit_and_run_does_not_duplicate_the_slot(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    async with session(concurrency=1) as rt:
        await rt.add_job(job("blocker", "block"))
        await rt.add_job(job("tick", cron="* * * * *"))
        await rt.enqueue("blocker")
        await eventually(lambda: runs.running == 1)
        await step_to(rt, clock, T0 + 30)  # committed, but no free slot to run it
        await count(rt, "tick", 1, status="queued")
    clock.set_wall(T0 + 40)
    async with session(concurrency=1) as rt:
        await count(rt, "tick", 1, status="done")  # the queued slot runs after restart
        await step_to(rt, clock, T0 + 90)
        await count(rt, "tick", 2, status="done")
        ds = await schedule_dispatches(rt, "tick")
        assert [d.slot for d in ds] == [T0 + 30, T0 + 90]
        assert [n for n, _ in runs.started].count("tick") == 2


async def test_crash_after_the_dispatch_commit_cannot_fire_the_slot_twice(
    session: Any, clock: FakeClock, db_path: str, runs: Runs
) -> None:
    async with session() as rt:
        row = await rt.add_job(job("tick", cron="* * * * *"))
    # another writer (a crashed process) left the slot's dispatch without moving next_run_at
    slot = T0 + 30
    store = await open_store(db_path)
    await store.apply_one(
        InsertDispatches(
            [
                NewDispatch(
                    job_id=row.id,
                    job_name="tick",
                    kind="schedule",
                    priority=2,
                    not_before=slot,
                    max_attempts=1,
                    idempotency_key=slot_key(row.id, slot),
                    slot=slot,
                )
            ],
            "dead",
            slot,
        )
    )
    await store.close()
    clock.set_wall(slot + 5)
    async with session() as rt:
        await count(rt, "tick", 1, status="done")
        assert rt.statistics()["scheduler"]["duplicates"] == 1
        assert (await rt.get_job("tick")).next_run_at == slot + MIN
        await step_to(rt, clock, slot + MIN)
        await count(rt, "tick", 2, status="done")
    assert [n for n, _ in runs.started] == ["tick", "tick"]


async def test_wall_clock_step_back_does_not_refire(session: Any, clock: FakeClock) -> None:
    async with session() as rt:
        await rt.add_job(job("tick", cron="* * * * *"))
        await step_to(rt, clock, T0 + 30)
        await count(rt, "tick", 1, status="done")
        clock.jump_wall(-3600)  # NTP step back an hour
        await step_to(rt, clock, clock.wall() + 3600 + 60)  # 12:01:30 again
        await count(rt, "tick", 2, status="done")
        ds = await schedule_dispatches(rt, "tick")
        assert [d.slot for d in ds] == [T0 + 30, T0 + 90]


# -- one-shot jobs ----------------------------------------------------------------------------


@pytest.mark.parametrize("delete_after_run", [False, True])
async def test_at_job_runs_exactly_once(
    session: Any, clock: FakeClock, runs: Runs, delete_after_run: bool
) -> None:
    at = "2024-06-10T12:02:00Z"
    async with session() as rt:
        row = await rt.add_job(job("once", at=at, delete_after_run=delete_after_run))
        assert await rt.next_fires("once", 3) == [ts(at)]
        await step_to(rt, clock, ts(at))
        await eventually(lambda: len(runs.started) == 1)
        if delete_after_run:
            await eventually(lambda: _gone(rt, "once"), what="the job to be deleted")
        else:
            await eventually(lambda: _disabled(rt, "once"), what="the job to be disabled")
            after = await rt.get_job("once")
            assert (after.next_run_at, after.last_status) == (None, "ok")
        await step_to(rt, clock, ts(at) + 3600)
    clock.set_wall(ts(at) + 7200)
    async with session() as rt:
        await scheduler_idle(rt, clock)
        runs_of = await rt.runs(job="once")
        assert [r.status for r in runs_of] == ["ok"]
        assert [d.kind for d in await rt.dispatches(job="once")] == ["schedule"]
        assert rt.statistics()["scheduler"]["fired"] == 0
    assert runs.started == [("once", runs_of[0].dispatch_id)]
    assert runs_of[0].job_id == row.id


async def _gone(rt: Runtime, name: str) -> bool:
    try:
        await rt.get_job(name)
    except NotFound:
        return True
    return False


async def _disabled(rt: Runtime, name: str) -> bool:
    return not (await rt.get_job(name)).spec.enabled


async def test_at_job_in_the_past_and_relative_at(session: Any, clock: FakeClock) -> None:
    async with session() as rt:
        with pytest.raises(ConfigError) as info:  # more than the 60 s grace ago: refused
            await rt.add_job(job("stale", at="2024-06-10T11:00:00Z"))
        assert info.value.field == "at" and "past" in str(info.value)
        await rt.add_job(job("late", at="2024-06-10T11:59:40Z"))  # 50 s ago: runs once, now
        await count(rt, "late", 1, status="done")
        row = await rt.add_job(job("soon", at="in 10m"))
        assert row.next_run_at == T0 + 600 and row.spec.at == "2024-06-10T12:10:30+00:00"
        await step_to(rt, clock, T0 + 600)
        await count(rt, "soon", 1, status="done")


# -- pools ----------------------------------------------------------------------------------


async def test_pool_limit_holds_across_jobs(session: Any, clock: FakeClock, runs: Runs) -> None:
    async with session(pools={"gpu": 1}) as rt:
        await rt.add_job(job("a", "block", cron="* * * * *", pool="gpu"))
        await rt.add_job(job("b", "block", cron="* * * * *", pool="gpu"))
        await step_to(rt, clock, T0 + 30)
        await eventually(lambda: runs.running == 1)
        assert len(runs.started) == 1
        first = runs.started[0][1]
        runs.release(first)  # the second starts as soon as the first ends, no clock move
        await eventually(lambda: len(runs.started) == 2 and runs.running == 1)
        runs.release()
        await eventually(lambda: runs.running == 0)
        assert runs.peak == 1
        assert {n for n, _ in runs.started} == {"a", "b"}


# -- consecutive-error ladder --------------------------------------------------------------


async def test_consecutive_error_ladder_pushes_the_next_slot(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    async with session() as rt:
        await rt.add_job(job("flaky", "fail", every=10.0, retry=ONE))
        ladder = [30.0, 60.0, 300.0, 900.0, 3600.0, 3600.0]
        for n, delay in enumerate(ladder, start=1):
            due = (await rt.get_job("flaky")).next_run_at or 0
            await step_to(rt, clock, due)
            await eventually(lambda n=n: _errors(rt, "flaky", n), what=f"{n} errors")
            row = await rt.get_job("flaky")
            assert row.next_run_at == due + delay, n
            assert row.last_status == "crashed"
        records = await skipped(rt, "flaky")
        assert records and {r for r, _ in records} == {"backoff"}
        runs.failing = False
        due = (await rt.get_job("flaky")).next_run_at or 0
        await step_to(rt, clock, due)
        await eventually(lambda: _status(rt, "flaky", "ok"), what="a success")
        row = await rt.get_job("flaky")
        anchor = row.anchor or 0
        assert row.next_run_at is not None and (row.next_run_at - anchor) % 10.0 == 0
        assert row.next_run_at - due <= 10.0


async def test_a_late_failure_withdraws_the_slot_committed_ahead(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    """A run that fails after its job's next slot was committed ahead: the error
    backoff passes over that slot as over one not yet committed (withdrawn, recorded
    ``backoff``), and the job fires when the backoff ends."""
    async with session() as rt:
        await rt.add_job(job("late", "block_fail", cron="* * * * *", retry=ONE))
        first = T0 + 30.0
        await step_to(rt, clock, first)
        await eventually(lambda: runs.running == 1)
        ended = first + MIN - 1.0
        await step_to(rt, clock, ended)  # the next slot is committed ahead
        await count(rt, "late", 1, status="queued")
        async with rt.subscribe(OutcomeEvent) as events:
            runs.release()
            await eventually(lambda: _errors(rt, "late", 1), what="the error")
            await scheduler_idle(rt, clock)
            ends: list[Any] = []
            await eventually(
                lambda: _heard(events, ends, 2), what="the run's end and the withdrawn slot's"
            )
        withdrawn = f"withdrawn before its slot {_iso(first + MIN)}: error backoff"
        assert [(e.status, e.error) for e in ends if e.run_id is None] == [
            ("cancelled", withdrawn)
        ]  # its end heard as any other: a stream consumer does not keep it queued
        assert (await rt.get_job("late")).next_run_at == ended + 30.0
        assert await skipped(rt, "late") == [("backoff", first + MIN)]
        states = [(d.status, d.slot) for d in await schedule_dispatches(rt, "late")]
        assert states == [("cancelled", None), ("dead", first)]
        await step_to(rt, clock, first + MIN + 5.0)  # the withdrawn slot: nothing runs
        assert len(runs.started) == 1
        await step_to(rt, clock, ended + 30.0)
        await eventually(lambda: len(runs.started) == 2, what="the run after the backoff")


def _iso(at: float) -> str:
    """A slot as the store writes it in a withdrawal's reason."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def _heard(events: Any, ends: list[Any], n: int) -> bool:
    with contextlib.suppress(anyio.WouldBlock):
        while True:
            ends.append(events.receive_nowait())
    return len(ends) >= n


async def _errors(rt: Runtime, name: str, n: int) -> bool:
    return (await rt.get_job(name)).consecutive_errors == n


async def _status(rt: Runtime, name: str, status: str) -> bool:
    row = await rt.get_job(name)
    return row.last_status == status and row.consecutive_errors == 0


# -- jobs API --------------------------------------------------------------------------------


async def test_update_enable_disable_and_run_now(
    session: Any, clock: FakeClock, runs: Runs
) -> None:
    async with session() as rt:
        await rt.add_job(job("j", cron="0 * * * *"))
        assert (await rt.get_job("j")).next_run_at == ts("2024-06-10T13:00:00Z")
        row = await rt.update_job("j", cron="*/5 * * * *", priority="high")
        assert row.next_run_at == ts("2024-06-10T12:05:00Z") and row.spec.priority == "high"
        same = await rt.update_job("j", description="only words")
        assert same.next_run_at == row.next_run_at
        assert (await rt.disable("j")).next_run_at is None
        dispatch_id = await rt.run_now("j")  # works on a disabled job
        assert (await rt.wait(dispatch_id, timeout=5)).status == "done"
        assert (await rt.get_job("j")).next_run_at is None  # the schedule did not move
        await step_to(rt, clock, ts("2024-06-10T12:05:00Z"))
        assert await schedule_dispatches(rt, "j") == []  # disabled: no slot
        await clock.set_wall_when_blocked(ts("2024-06-10T12:07:00Z"))
        row = await rt.enable("j")  # recomputed from now, the 12:05 slot is not owed
        assert row.next_run_at == ts("2024-06-10T12:10:00Z")
        await step_to(rt, clock, ts("2024-06-10T12:10:00Z"))
        await count(rt, "j", 1, status="done")
        assert await rt.next_fires("j", 2) == [
            ts("2024-06-10T12:15:00Z"),
            ts("2024-06-10T12:20:00Z"),
        ]
        await rt.remove_job("j")
        await step_to(rt, clock, ts("2024-06-10T12:15:00Z"))
        assert len(await schedule_dispatches(rt, "j")) == 1


async def test_config_jobs_keep_their_slot_across_restarts(
    db_path: str, clock: FakeClock, runs: Runs
) -> None:
    spec = job("cfg", cron="* * * * *", misfire="run_all")
    cfg = Config(database=db_path, shutdown_grace=0, jobs=[spec])
    async with Runtime.open(cfg, clock=clock, targets={"noop": runs.noop}) as rt:
        assert (await rt.get_job("cfg")).next_run_at == T0 + 30
    clock.set_wall(T0 + 100)  # 12:01:00 and 12:02:00 passed while down
    async with Runtime.open(cfg, clock=clock, targets={"noop": runs.noop}) as rt:
        await count(rt, "cfg", 2, status="done")


async def test_job_added_by_another_process_is_scheduled(
    session: Any, clock: FakeClock, db_path: str
) -> None:
    async with session() as rt:
        other = await open_store(db_path)
        await other.apply_one(save_op(job("remote", cron="* * * * *"), clock.wall()))
        await other.close()
        # SQLite: the wake datagram; PostgreSQL: the commit's NOTIFY (no socket there)
        assert send_wake(db_path, "j") or db_path.startswith("postgresql")
        await eventually(lambda: rt.statistics()["scheduler"]["jobs"] == 1)
        await step_to(rt, clock, T0 + 30)
        await count(rt, "remote", 1, status="done")


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "tz"),
        ({"cron": None, "at": "next tuesday-ish"}, "at"),
        ({"cron": None, "every": 0.0}, "every"),
        ({"cron": None, "every": -5.0}, "every"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"misfire": "whenever"}, "misfire"),
    ],
)
async def test_bad_schedule_is_rejected_and_the_stored_job_is_untouched(
    session: Any, changes: dict[str, Any], field: str
) -> None:
    async with session() as rt:
        before = await rt.add_job(job("keep", cron="*/5 * * * *"))
        bad: dict[str, Any] = {"name": "keep", "target": "noop", "cron": "*/5 * * * *", **changes}
        with pytest.raises(ConfigError) as info:
            await rt.add_job(JobSpec(**bad))
        assert info.value.field == field or field in str(info.value)
        with pytest.raises(ConfigError) as info:
            await rt.update_job("keep", **changes)
        assert field in str(info.value) or info.value.field == field
        after = await rt.get_job("keep")
        assert (after.spec, after.next_run_at) == (before.spec, before.next_run_at)
