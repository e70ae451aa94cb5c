"""The dispatcher's window of the queue's head, through the embedded Runtime with a
window of 4 (so every backlog here is many windows long): priority, FIFO and
not-before order stay exact; arrivals ahead of the window's tail, waiters parked on a
busy pool, future and retried dispatches and a cancel past the window all behave as
with the whole queue in memory; what is held stays bounded. Fake clock, real store."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from shepherd.actors.dispatcher import actor
from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.runtime.jobs import new_dispatch
from shepherd.store.factory import open_store
from shepherd.store.models import PRIORITIES, EnqueueRequest, RetryPolicy
from shepherd.store.ops import InsertDispatches
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

T0 = 1_750_000_000.0
WINDOW = 4


class Targets:
    def __init__(self) -> None:
        self.order: list[Any] = []
        self.failed_once: set[Any] = set()
        self.gate = anyio.Event()

    async def rec(self, ctx: RunContext) -> None:
        n = ctx.payload.get("n")
        self.order.append(n)
        if ctx.payload.get("fail") and n not in self.failed_once:
            self.failed_once.add(n)
            raise RuntimeError("once")

    async def block(self, ctx: RunContext) -> None:
        self.order.append("gate")
        await self.gate.wait()


@pytest.fixture(autouse=True)
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actor, "window_size", lambda concurrency: WINDOW)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=T0)


@pytest.fixture
def targets() -> Targets:
    return Targets()


@pytest.fixture
def session(db_path: str, clock: FakeClock, targets: Targets) -> Any:
    @asynccontextmanager
    async def open_(concurrency: int = 1) -> AsyncIterator[Runtime]:
        cfg = Config(database=db_path, shutdown_grace=0, concurrency=concurrency)
        tmap = {"rec": targets.rec, "block": targets.block}
        async with Runtime.open(cfg, clock=clock, targets=tmap) as rt:
            await rt.add_job(JobSpec(name="a", target="rec", retry=RetryPolicy(base=10.0)))
            await rt.add_job(JobSpec(name="gate", target="block", timeout=86400.0))
            yield rt

    return open_


def req(n: Any, **kw: Any) -> EnqueueRequest:
    return EnqueueRequest(job="a", payload={"n": n, **kw.pop("payload", {})}, **kw)


async def gated(rt: Runtime, clock: FakeClock, targets: Targets) -> int:
    """The one run slot held by a blocked run, so a backlog builds behind it."""
    gate = await rt.enqueue("gate")
    await eventually(lambda: targets.order == ["gate"], what="the gate running")
    await clock.wait_idle()
    return gate


async def drained(
    rt: Runtime, clock: FakeClock, targets: Targets, n: int, left: int = 0
) -> list[Any]:
    """Release the gate; the ``n`` runs behind it, once ``left`` remain queued."""
    targets.gate.set()
    await eventually(lambda: len(targets.order) >= n + 1, what=f"{n} runs")
    await clock.wait_idle()
    stats = await rt.stats()
    assert stats["dispatches"]["queued"] == left
    return targets.order[1:]


async def held(rt: Runtime, clock: FakeClock) -> dict[str, Any]:
    """The dispatcher's statistics once it has taken in what was sent to it."""
    await clock.wait_idle()
    stats: dict[str, Any] = rt.statistics()["dispatcher"]
    return stats


def heap_order(reqs: list[EnqueueRequest]) -> list[Any]:
    """The order the whole queue in memory would run them in: (rank, not-before, seq)."""
    ranked = [
        (PRIORITIES.index(r.priority or "normal"), r.not_before or T0, i, r)
        for i, r in enumerate(reqs)
    ]
    return [r.payload["n"] for *_, r in sorted(ranked, key=lambda x: x[:3]) if r.payload]


async def test_a_backlog_many_windows_long_runs_in_exact_heap_order(
    session: Any, clock: FakeClock, targets: Targets
) -> None:
    rnd = random.Random(7)
    reqs = [
        req(i, priority=rnd.choice(PRIORITIES), not_before=T0 - rnd.choice([0, 5, 10, 30]))
        for i in range(60)
    ]
    async with session() as rt:
        await gated(rt, clock, targets)
        for i in range(0, 60, 15):  # four bursts: later ones sort ahead of the tail too
            await rt.enqueue_many(reqs[i : i + 15])
        assert (await held(rt, clock))["queued"] <= 2 * WINDOW
        assert await drained(rt, clock, targets, 60) == heap_order(reqs)


async def test_a_backlog_committed_before_the_start_is_read_a_window_at_a_time(
    session: Any, db_path: str, clock: FakeClock, targets: Targets
) -> None:
    reqs = [req(i, priority=PRIORITIES[i % 3], not_before=T0 - (i % 4)) for i in range(40)]
    async with session():
        pass
    store = await open_store(db_path)
    try:
        row = await store.job("a")
        assert row is not None
        rows = [new_dispatch(row, r, T0, where="test") for r in reqs]
        await store.apply_one(InsertDispatches(rows, "elsewhere", T0))
    finally:
        await store.close()
    async with session() as rt:
        await eventually(lambda: len(targets.order) == 40, what="40 runs")
        assert targets.order == heap_order(reqs)
        stats = rt.statistics()["dispatcher"]
        assert stats["window"] == WINDOW and stats["window_complete"]


async def test_what_is_held_stays_within_the_window(
    session: Any, clock: FakeClock, targets: Targets
) -> None:
    async with session() as rt:
        await gated(rt, clock, targets)
        await rt.enqueue_many([req(i) for i in range(200)])
        await rt.enqueue_many([req(i, not_before=T0 + 10 + i) for i in range(200, 300)])
        stats = await held(rt, clock)
        assert 0 < stats["queued"] <= 4 * WINDOW and not stats["window_complete"]
        assert await drained(rt, clock, targets, 200, left=100) == list(range(200))
        await clock.set_wall_when_blocked(T0 + 1000)
        await eventually(lambda: len(targets.order) == 301, what="the future ones")
        assert targets.order[201:] == list(range(200, 300))


async def test_an_arrival_ahead_of_a_full_window_runs_next(
    session: Any, clock: FakeClock, targets: Targets
) -> None:
    async with session() as rt:
        await gated(rt, clock, targets)
        await rt.enqueue_many([req(i) for i in range(20)])
        await rt.enqueue("a", {"n": "urgent"}, priority="critical")
        await rt.enqueue("a", {"n": "early"}, not_before=T0 - 60)  # normal, but older
        assert await drained(rt, clock, targets, 22) == ["urgent", "early", *range(20)]


async def test_waiters_parked_on_a_busy_pool_do_not_stop_other_jobs(
    session: Any, clock: FakeClock, targets: Targets
) -> None:
    async with session(concurrency=2) as rt:
        await rt.add_job(JobSpec(name="pooled", target="block", pool="p", timeout=86400.0))
        await rt.enqueue_many([EnqueueRequest(job="pooled") for _ in range(12)])
        await rt.enqueue_many([req(i) for i in range(3)])
        await eventually(lambda: targets.order == ["gate", 0, 1, 2], what="the free job's runs")
        await clock.wait_idle()
        assert rt.statistics()["dispatcher"]["parked"] == 11  # one runs, the rest wait
        targets.gate.set()
        await eventually(lambda: targets.order.count("gate") == 12, what="the pool drained")


async def test_future_and_retried_dispatches_past_the_window_run_at_their_time(
    session: Any, clock: FakeClock, targets: Targets
) -> None:
    reqs = [req(f"f{i}", not_before=T0 + 100 + i) for i in range(10)]
    reqs.append(req("soon", priority="low", not_before=T0 + 50))
    async with session() as rt:
        await rt.enqueue_many(reqs)
        await rt.enqueue("a", {"n": "flaky", "fail": True})
        await eventually(lambda: targets.order == ["flaky"], what="the first attempt")
        assert (await held(rt, clock))["queued"] <= 2 * WINDOW
        await clock.set_wall_when_blocked(T0 + 55)
        await eventually(lambda: len(targets.order) == 3, what="the retry and soon")
        assert targets.order == ["flaky", "flaky", "soon"]  # retried at +10, soon at +50
        await clock.set_wall_when_blocked(T0 + 104.5)
        await eventually(lambda: len(targets.order) == 8, what="five come due")
        await clock.set_wall_when_blocked(T0 + 1000)
        await eventually(lambda: len(targets.order) == 13, what="all due")
        assert targets.order[3:] == [f"f{i}" for i in range(10)]


async def test_a_cancel_past_the_window_ends_it_and_is_heard(
    session: Any, clock: FakeClock, targets: Targets
) -> None:
    async with session() as rt:
        await gated(rt, clock, targets)
        ids = await rt.enqueue_many([req(i) for i in range(20)])
        assert (await held(rt, clock))["queued"] < 20  # the last is the store's only
        assert await rt.cancel(ids[-1]) == "cancelled"
        with anyio.fail_after(10):
            assert (await rt.wait(ids[-1])).status == "cancelled"
        assert await rt.cancel(ids[0]) == "cancelled"  # one held in the window
        assert await drained(rt, clock, targets, 18) == list(range(1, 19))
        assert (await rt.dispatch(ids[0])).status == "cancelled"


async def test_a_paused_backlog_is_left_to_the_store_and_runs_in_order_once_resumed(
    session: Any, clock: FakeClock, targets: Targets
) -> None:
    async with session() as rt:
        await rt.add_job(JobSpec(name="b", target="rec"))
        await rt.pause("job", "a")
        await rt.enqueue_many([req(i, priority=PRIORITIES[i % 2]) for i in range(60)])
        await rt.enqueue_many([EnqueueRequest(job="b", payload={"n": "b"})])
        await eventually(lambda: targets.order == ["b"], what="the other job's run")
        stats = await held(rt, clock)
        assert stats["parked"] <= 4 * WINDOW + 1 and stats["queued"] <= 6 * WINDOW
        await rt.resume("job", "a")
        await eventually(lambda: len(targets.order) == 61, what="the resumed backlog")
        expected = sorted(range(60), key=lambda i: (i % 2, i))  # high first, then FIFO
        assert targets.order[1:] == expected
