"""The run actor names the deadline that passed when the health check's backstop
(``stale``) cancels it: a job without ``idle_timeout`` has no idle deadline, so its run
ends ``timeout`` with reason ``timeout`` (seen after a SIGSTOP / SIGCONT of the daemon,
when the stale check fires before the run's own deadline timer)."""

from __future__ import annotations

import anyio
import pytest

from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.messages import DispatcherMsg, RunFinished
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.actors.primitives.runsup import ChildHandle
from shepherd.actors.run import RunOrder, run_actor
from shepherd.store.models import JobSpec

pytestmark = pytest.mark.anyio


class _Hangs:
    name = "python"

    def __init__(self) -> None:
        self.started = anyio.Event()

    def validate(self, spec: JobSpec) -> None:
        pass

    async def execute(self, ctx: RunContext) -> ExecResult:
        self.started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def _stale_outcome(job: JobSpec) -> RunFinished:
    clock = FakeClock()
    mailbox: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 10)
    handle = ChildHandle(1)
    executor = _Hangs()
    order = RunOrder(
        run_id=1,
        dispatch_id=1,
        job_id=1,
        job=job,
        attempt=1,
        max_attempts=1,
        payload={},
        idempotency_key=None,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: run_actor(
                handle,
                order,
                executor=executor,
                clock=clock,
                report=mailbox.address(),
                data_dir=".",
                host=None,
            )
        )
        with anyio.fail_after(10):
            await executor.started.wait()
        handle.cancel("stale")  # what the dispatcher's stale check does
        with anyio.fail_after(10):
            msg = await mailbox.receive()
    assert isinstance(msg, RunFinished)
    return msg


async def test_a_stale_run_of_a_job_with_only_a_timeout_is_recorded_timeout() -> None:
    msg = await _stale_outcome(JobSpec(name="t", target="x", timeout=2))
    assert msg.outcome == "timeout"
    assert msg.reason == "timeout"
    assert msg.error == "exceeded 2s timeout"


async def test_a_stale_run_waiting_on_its_idle_deadline_is_recorded_idle() -> None:
    msg = await _stale_outcome(JobSpec(name="t", target="x", timeout=60, idle_timeout=1))
    assert (msg.outcome, msg.reason) == ("timeout", "idle")
