"""Waiters of an ``overlap = "queue"`` job through the embedded Runtime: disabling the
job while a run is in progress resolves every waiting fire (skipped, ``disabled``),
and a waiter that leaves the queue without running (cancelled, expired) hands its turn
to the next one. Fake clock, real SQLite file, the real scheduler and dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.store.models import Dispatch
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

T0 = datetime(2024, 6, 10, 12, 0, 30, tzinfo=UTC).timestamp()  # 30 s past a minute
FIRST = T0 + 30.0  # the first slot of "* * * * *"
MIN = 60.0


class Gates:
    """A python target that waits until its dispatch is released."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self._gates: dict[int, anyio.Event] = {}

    def release(self, dispatch_id: int) -> None:
        self._gates.setdefault(dispatch_id, anyio.Event()).set()

    async def block(self, ctx: RunContext) -> None:
        self.started.append(ctx.dispatch_id)
        await self._gates.setdefault(ctx.dispatch_id, anyio.Event()).wait()


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=T0)


@pytest.fixture
def session(db_path: str, clock: FakeClock, gates: Gates) -> Any:
    @asynccontextmanager
    async def open_() -> AsyncIterator[Runtime]:
        cfg = Config(database=db_path, shutdown_grace=0)
        async with Runtime.open(cfg, clock=clock, targets={"block": gates.block}) as rt:
            yield rt

    return open_


def queue_job(**kw: Any) -> JobSpec:
    kw.setdefault("max_queued", 10)
    return JobSpec(
        name="q", target="block", cron="* * * * *", overlap="queue", timeout=86400.0, **kw
    )


async def fires(rt: Runtime) -> list[Dispatch]:
    ds = [d for d in await rt.dispatches(job="q", limit=100) if d.kind == "schedule"]
    return sorted(ds, key=lambda d: d.slot or 0.0)


async def step_to(rt: Runtime, clock: FakeClock, wall: float, n: int) -> list[Dispatch]:
    """Move to ``wall`` once everything waits; return the fires once there are ``n``."""
    await clock.set_wall_when_blocked(wall)
    await eventually(lambda: _count(rt, n), what=f"{n} fires")
    return await fires(rt)


async def _count(rt: Runtime, n: int) -> bool:
    return len(await fires(rt)) == n


async def one_running_and_waiters(rt: Runtime, clock: FakeClock, gates: Gates, n: int) -> None:
    """Fire ``n + 1`` slots: the first runs, the other ``n`` wait behind it."""
    for k in range(n + 1):
        await step_to(rt, clock, FIRST + k * MIN, k + 1)
    await eventually(lambda: len(gates.started) == 1, what="the first fire to run")
    await eventually(lambda: _parked(rt, n), what=f"{n} waiters")


async def _outcome(rt: Runtime, dispatch_id: int, outcome: str) -> bool:
    return (await rt.dispatch(dispatch_id)).outcome == outcome


def _parked(rt: Runtime, n: int) -> bool:
    return bool(rt.statistics()["dispatcher"]["parked"] == n)


async def statuses(rt: Runtime) -> list[tuple[str, str | None]]:
    return [(d.status, d.outcome) for d in await fires(rt)]


async def test_disabling_the_job_skips_every_waiting_fire(
    session: Any, clock: FakeClock, gates: Gates
) -> None:
    async with session() as rt:
        await rt.add_job(queue_job())
        await one_running_and_waiters(rt, clock, gates, 3)
        assert (await rt.stats())["dispatches"]["queued"] == 3

        await rt.disable("q")

        async def resolved() -> bool:
            return (await rt.stats())["dispatches"]["queued"] == 0

        await eventually(resolved, what="the waiting fires of the disabled job to end")
        assert await statuses(rt) == [("running", None)] + [("done", "skipped")] * 3
        skipped = await rt.runs(job="q", status="skipped", limit=100)
        assert sorted(r.reason or "" for r in skipped) == ["disabled"] * 3
        assert rt.statistics()["dispatcher"]["parked"] == 0

        first = (await fires(rt))[0]
        gates.release(first.id)
        final = await rt.wait(first.id, timeout=10)
        assert final.status == "done"
        await clock.wait_idle()
        assert gates.started == [first.id]  # nothing else ran
        stats = await rt.stats()
        assert (stats["dispatches"]["queued"], stats["dispatches"]["running"]) == (0, 0)


async def test_only_a_run_now_waiter_of_a_disabled_job_still_runs_after_the_run(
    session: Any, clock: FakeClock, gates: Gates
) -> None:
    """Disabled = must not run: the waiting fires and the enqueued dispatch are skipped
    (``disabled``); an operator's run-now runs a disabled job, in its place behind the
    running run. (Until issue 11 an enqueued waiter ran too; see README "disable vs
    pause".)"""
    async with session() as rt:
        await rt.add_job(queue_job())
        await one_running_and_waiters(rt, clock, gates, 1)
        extra = await rt.enqueue("q")
        now = await rt.run_now("q")
        await eventually(lambda: _parked(rt, 3), what="the enqueued dispatches to wait")

        await rt.disable("q")
        await eventually(lambda: _parked(rt, 1), what="the fire and the enqueue to be skipped")
        # the dispatcher lets go of them, then commits their end (a read may come between)
        await eventually(lambda: _outcome(rt, extra, "skipped"), what="the enqueue's end")
        assert (await rt.dispatch(now)).status == "queued"

        gates.release((await fires(rt))[0].id)
        await eventually(lambda: gates.started[-1:] == [now], what="the run-now to run")
        gates.release(now)
        assert (await rt.wait(now, timeout=10)).status == "done"
        assert await statuses(rt) == [("done", "ok"), ("done", "skipped")]


async def test_a_cancelled_waiter_hands_its_turn_to_the_next(
    session: Any, clock: FakeClock, gates: Gates
) -> None:
    async with session() as rt:
        await rt.add_job(queue_job())
        await one_running_and_waiters(rt, clock, gates, 2)
        first, second, third = await fires(rt)
        assert await rt.cancel(second.id) == "cancelled"

        gates.release(first.id)
        await eventually(lambda: gates.started == [first.id, third.id], what="the third fire")
        gates.release(third.id)
        assert (await rt.wait(third.id, timeout=10)).status == "done"
        assert await statuses(rt) == [("done", "ok"), ("cancelled", "cancelled"), ("done", "ok")]


async def test_an_expired_waiter_hands_its_turn_to_the_next(
    session: Any, clock: FakeClock, gates: Gates
) -> None:
    async with session() as rt:
        await rt.add_job(queue_job(expires_in=100.0))  # fire k expires 100 s after it
        await one_running_and_waiters(rt, clock, gates, 2)
        first, second, third = await fires(rt)
        await clock.set_wall_when_blocked(FIRST + 2 * MIN + 50)  # second expired, third not

        gates.release(first.id)
        await eventually(lambda: gates.started == [first.id, third.id], what="the third fire")
        assert (await rt.dispatch(second.id)).dead_reason == "expired"
        gates.release(third.id)
        assert (await rt.wait(third.id, timeout=10)).status == "done"
