"""The run supervisor: runs under a cap, on workers woken one at a time."""

from __future__ import annotations

import anyio
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.runsup import ChildHandle, RunSupervisor

pytestmark = pytest.mark.anyio


def _supervisor(cap: int, crashed: list[int] | None = None) -> RunSupervisor:
    def on_crash(key: int, exc: BaseException) -> None:
        if crashed is not None:
            crashed.append(key)

    return RunSupervisor("runs", max_children=cap, clock=FakeClock(), on_crash=on_crash)


async def test_a_burst_of_runs_that_do_not_wait_costs_one_or_two_workers() -> None:
    sup = _supervisor(64)
    done: list[int] = []

    async def run(handle: ChildHandle) -> None:
        done.append(handle.key)

    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        for key in range(50):
            sup.start_child(key, run)
        await anyio.wait_all_tasks_blocked()
        assert done == list(range(50))  # in order, all of them
        assert sup.statistics()["workers"] <= 2 and sup.free == 64
        tg.cancel_scope.cancel()


async def test_runs_that_wait_hand_the_rest_on_and_all_run_at_once() -> None:
    sup = _supervisor(8)
    release = anyio.Event()
    started: list[int] = []

    async def run(handle: ChildHandle) -> None:
        started.append(handle.key)
        await release.wait()

    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        for key in range(8):
            sup.start_child(key, run)
        await anyio.wait_all_tasks_blocked()
        assert sorted(started) == list(range(8))  # each on a worker of its own
        assert sup.free == 0 and sup.statistics()["workers"] == 8
        with pytest.raises(RuntimeError, match="cap of 8"):
            sup.start_child(99, run)
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert sup.free == 8
        # the same workers take the next burst: none is added
        later = anyio.Event()
        for key in range(10, 14):
            sup.start_child(key, lambda h: later.wait())
        await anyio.wait_all_tasks_blocked()
        assert sup.statistics()["running"] == 4 and sup.statistics()["workers"] == 8
        later.set()
        await anyio.wait_all_tasks_blocked()
        assert sup.free == 8
        tg.cancel_scope.cancel()


async def test_a_run_that_raises_is_reported_and_the_worker_goes_on() -> None:
    crashed: list[int] = []
    sup = _supervisor(4, crashed)
    done: list[int] = []

    async def run(handle: ChildHandle) -> None:
        if handle.key == 1:
            raise ValueError("boom")
        done.append(handle.key)

    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        for key in range(4):
            sup.start_child(key, run)
        await anyio.wait_all_tasks_blocked()
        assert crashed == [1] and done == [0, 2, 3] and sup.free == 4
        assert sup.statistics()["crashed_total"] == 1
        tg.cancel_scope.cancel()
