"""The launcher, without a dispatcher loop: starting, cancelling, the stale backstop, a
run actor that dies without reporting, and a run a worker claims (both also when the
dispatcher's mailbox is full)."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest

from shepherd.actors.dispatcher.launcher import Launcher
from shepherd.actors.dispatcher.runs import Running
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.external import ExternalExecutor
from shepherd.actors.executors.host import Host
from shepherd.actors.messages import DispatcherMsg, Event, Poke, RunClaimed, RunFinished
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.actors.primitives.runsup import ChildHandle
from shepherd.actors.writer import StoreMsg
from shepherd.store.models import JobSpec, Seconds
from tests.actors.dispatcher.helpers import entry

JOB = JobSpec(name="j", target="t", executor="nowhere", timeout=Seconds(10.0))


class Rig:
    def __init__(
        self, clock: FakeClock | None = None, executors: dict[str, Executor] | None = None
    ) -> None:
        self.clock = clock or FakeClock()
        self.events: list[Event] = []
        self.finished: list[RunFinished] = []
        self.claims: list[RunClaimed] = []
        self.counters: dict[str, int] = {"admitted": 0, "stale": 0}
        self.launcher = Launcher(
            executors or {},
            Mailbox[StoreMsg]("store", 1).address(),
            self.clock,
            emit=self.events.append,
            finish=self.finished.append,
            claim=self.claims.append,
            counters=self.counters,
            host=cast(Host, None),
            concurrency=4,
            data_dir=".",
        )
        self.runs = self.launcher.reset()


def test_a_claim_for_an_unknown_executor_finishes_at_once_without_a_run() -> None:
    rig = Rig()
    rig.launcher.start(entry(1), JOB, 7, now=0.0)
    assert rig.counters["admitted"] == 1 and 1 in rig.runs
    [msg] = rig.finished
    assert (msg.run_id, msg.dispatch_id, msg.outcome, msg.retry) == (7, 1, "error", False)
    assert msg.error == "no executor named 'nowhere' in this runtime"
    assert rig.events == []  # no RunStarted: nothing started
    assert rig.launcher.runsup.started_total == 0


def test_cancel_answers_whether_the_dispatch_runs_here() -> None:
    rig = Rig()
    rig.runs.add(Running(7, entry(1), 1, None))
    assert rig.launcher.cancel(1) is True
    assert rig.launcher.cancel(2) is False


@pytest.mark.anyio
async def test_the_tick_cancels_a_stale_run_then_finishes_it_as_timeout() -> None:
    rig = Rig(FakeClock(mono=1000.0))
    started = 1000.0 - 16.0  # 10 s timeout + 5 s margin, passed
    rig.runs.add(Running(7, entry(1, job_id=1), 1, None, started=started, activity=started))
    await rig.launcher.tick({1: JOB}, margin=5.0)
    assert rig.counters["stale"] == 1 and rig.finished == []
    rig.clock.advance(5.0)  # the second margin: no outcome yet
    await rig.launcher.tick({1: JOB}, margin=5.0)
    [msg] = rig.finished
    assert (msg.outcome, msg.reason, msg.timed_out) == ("timeout", "stale", True)
    assert rig.counters["stale"] == 1  # cancelled once


async def _dies(handle: ChildHandle) -> None:
    raise RuntimeError("boom")


@pytest.mark.anyio
@pytest.mark.parametrize("full", [False, True])
async def test_a_run_actor_that_dies_is_reported_crashed(full: bool) -> None:
    rig = Rig()
    mailbox: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 2)
    me = mailbox.address()
    if full:
        me.tell(Poke())
        me.tell(Poke())
    rig.runs.add(Running(7, entry(1), 1, None))
    async with anyio.create_task_group() as tg:
        await tg.start(rig.launcher.run, me)
        rig.launcher.runsup.start_child(7, _dies)
        with anyio.fail_after(5):
            while rig.launcher.runsup.crashed_total == 0 or rig.launcher.free < 4:
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    waiting: list[Any] = []
    while mailbox.depth:
        waiting.append(mailbox.receive_nowait())
    crashed = [m for m in waiting + rig.finished if isinstance(m, RunFinished)]
    [msg] = crashed
    assert (msg.run_id, msg.dispatch_id, msg.outcome) == (7, 1, "crashed")
    assert "boom" in (msg.error or "")
    # a full mailbox: straight to the batch (the loop runs anyway); else through the mailbox
    assert (msg in rig.finished) is full


@pytest.mark.anyio
@pytest.mark.parametrize("full", [False, True])
async def test_a_run_a_worker_claims_is_reported_claimed(full: bool) -> None:
    clock = FakeClock()
    external = ExternalExecutor(clock)
    rig = Rig(clock, {"external": external})
    mailbox: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 2)
    me = mailbox.address()
    if full:
        me.tell(Poke())
        me.tell(Poke())
    job = JobSpec(name="x", executor="external", timeout=Seconds(60.0))
    board = external.board
    async with anyio.create_task_group() as tg:
        await tg.start(rig.launcher.run, me)
        rig.launcher.start(entry(1), job, 7, 0.0)
        with anyio.fail_after(5):
            while board.statistics()["unclaimed"] == 0:
                await anyio.lowlevel.checkpoint()
        lease = board.claim_nowait("w", None)
        assert lease is not None and lease.claimed_at is not None
        with anyio.fail_after(5):
            while not rig.claims and mailbox.depth == (2 if full else 0):
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    waiting: list[Any] = []
    while mailbox.depth:
        waiting.append(mailbox.receive_nowait())
    [msg] = [m for m in waiting + rig.claims if isinstance(m, RunClaimed)]
    assert msg == RunClaimed(run_id=7, dispatch_id=1, agent="w", at=lease.claimed_at)
    # a full mailbox: straight to the batch (the loop runs anyway); else through the mailbox
    assert (msg in rig.claims) is full
