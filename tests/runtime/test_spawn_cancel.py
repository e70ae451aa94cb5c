"""A spawn dispatch that ends without a run still ends its one-shot job, as a run does.

A spawned job is a one-shot that has fired; the scheduler ends it (removed, or disabled
with ``delete_after_run: false``) when its dispatch's final outcome arrives. A dispatch
cancelled before any run (its approval rejected or timed out, an operator's cancel while
it is queued or awaiting approval) is such an outcome: the job must not stay until the
next restart. A gated at-job is ended the same way. Fake clock, real SQLite file; the
CLI beside a running runtime (another process's decision, heard through the wake
socket) on the real clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import ApprovalPolicy, Config, JobSpec, RunContext, Runtime
from shepherd.runtime.cli import main
from shepherd.store.models import Seconds
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

RAN: list[Any] = []
GATE = {"approval": {"timeout": "1m"}, "options": {"delivery_channel": "ops"}}


async def record(ctx: RunContext) -> None:
    RAN.append(ctx.job.name)


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


@asynccontextmanager
async def runtime(db_path: str, clock: FakeClock) -> AsyncIterator[Runtime]:
    cfg = Config(database=db_path, shutdown_grace=0, health_interval=3600)
    async with Runtime.open(cfg, clock=clock, targets={"record": record}) as rt:
        yield rt


async def spawn(rt: Runtime, **body: Any) -> tuple[str, int]:
    """Send a spawn message; (the spawned job's name, its dispatch id)."""
    text = json.dumps({"target": "record", **body})
    msg = await rt.message(await rt.send_message("planner", "main", text, kind="spawn"))
    assert msg.status == "delivered" and msg.metadata is not None, msg.last_error
    return msg.metadata["spawned"]["job"], msg.metadata["spawned"]["dispatch_id"]


async def job_names(rt: Runtime) -> set[str]:
    return {j.name for j in await rt.list_jobs()}


async def test_a_rejected_spawn_removes_its_job(db_path: str) -> None:
    clock = FakeClock()
    async with runtime(db_path, clock) as rt:
        job, dispatch_id = await spawn(rt, **GATE)
        assert (await rt.dispatch(dispatch_id)).status == "awaiting_approval"
        [a] = await rt.approvals(status="pending")
        waited: list[str] = []

        async def wait() -> None:  # a waiter from before the rejection hears it too
            waited.append((await rt.wait(dispatch_id, timeout=10)).status)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await clock.wait_idle()
            await rt.reject(a.id, "not now", by="bob")
        assert waited == ["cancelled"]
        await clock.wait_idle()
        assert job not in await job_names(rt)
    assert RAN == []


async def test_a_spawn_whose_approval_times_out_removes_its_job(db_path: str) -> None:
    clock = FakeClock()
    async with runtime(db_path, clock) as rt:
        job, dispatch_id = await spawn(rt, **GATE)
        await clock.advance_when_blocked(61)
        await clock.wait_idle()
        d = await rt.dispatch(dispatch_id)
        assert (d.status, d.last_error) == ("cancelled", "approval timed out")
        assert job not in await job_names(rt)
    assert RAN == []


async def test_a_spawn_cancelled_while_queued_behind_a_pause_removes_its_job(
    db_path: str,
) -> None:
    clock = FakeClock()
    async with runtime(db_path, clock) as rt:
        await rt.pause("runtime")
        job, dispatch_id = await spawn(rt)
        await clock.wait_idle()
        assert (await rt.dispatch(dispatch_id)).status == "queued"
        assert await rt.cancel(dispatch_id) == "cancelled"
        assert (await rt.wait(dispatch_id, timeout=10)).status == "cancelled"
        await clock.wait_idle()
        assert job not in await job_names(rt)
        await rt.resume("runtime")
        await clock.wait_idle()
    assert RAN == []


async def test_a_spawn_cancelled_while_awaiting_approval_is_disabled_when_kept(
    db_path: str,
) -> None:
    clock = FakeClock()
    async with runtime(db_path, clock) as rt:
        job, dispatch_id = await spawn(rt, delete_after_run=False, **GATE)
        assert await rt.cancel(dispatch_id) == "cancelled"
        await clock.wait_idle()
        kept = await rt.get_job(job)
        assert not kept.spec.enabled  # delete_after_run false: disabled, as after a run
        [a] = await rt.approvals()
        assert a.status == "rejected"
    assert RAN == []


async def test_a_rejected_at_job_ends_like_one_that_ran(db_path: str) -> None:
    clock = FakeClock()
    async with runtime(db_path, clock) as rt:
        at = datetime.fromtimestamp(clock.wall() + 10, UTC).isoformat()
        spec = JobSpec(
            name="once",
            target="record",
            at=at,
            options={"delivery": "none", "delivery_channel": "ops"},
            approval=ApprovalPolicy(timeout=Seconds(3600)),
        )
        await rt.add_job(spec)
        await clock.advance_when_blocked(11)
        [a] = await rt.approvals(status="pending")
        await rt.reject(a.id, "skip it")
        await clock.wait_idle()
        ended = await rt.get_job("once")  # disabled, as after its run (no delete_after_run)
        assert not ended.spec.enabled and ended.last_status == "cancelled"
    assert RAN == []


async def test_the_cli_rejecting_or_cancelling_beside_a_runtime_ends_the_job(
    db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def cli(*args: str) -> None:
        code = await anyio.to_thread.run_sync(main, ["--database", db_path, *args])
        assert code == 0, capsys.readouterr().err

    cfg = Config(database=db_path, shutdown_grace=0)
    async with Runtime.open(cfg, targets={"record": record}) as rt:
        rejected, _ = await spawn(rt, **GATE)
        [a] = await rt.approvals(status="pending")
        await cli("approvals", "reject", str(a.id), "--reason", "no")
        await eventually(lambda: _gone(rt, rejected), what="the rejected spawn's job removed")
        cancelled, dispatch_id = await spawn(rt, **GATE)
        await cli("cancel", str(dispatch_id))
        await eventually(lambda: _gone(rt, cancelled), what="the cancelled spawn's job removed")
    assert RAN == []


async def _gone(rt: Runtime, name: str) -> bool:
    return name not in await job_names(rt)
