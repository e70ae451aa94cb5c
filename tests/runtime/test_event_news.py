"""What the runtime's events tell the event stream: ``DispatchQueued`` for new
dispatches (this process's enqueues and another process's, read after its Poke), built
only while someone listens; the assigned ``agent`` on ``RunStarted`` / ``OutcomeEvent``.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from shepherd import Config, JobSpec, Runtime
from shepherd.actors.messages import DispatchQueued, OutcomeEvent, RunStarted
from shepherd.runtime import RunContext
from shepherd.store.models import EnqueueRequest

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


async def who(ctx: RunContext) -> Any:
    return ctx.agent


async def test_dispatch_queued_names_each_new_dispatch(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets={"who": who}) as rt:
        await rt.add_job(JobSpec(name="w", target="who"))
        async with rt.subscribe(DispatchQueued) as events:
            ids = await rt.enqueue_many(
                [EnqueueRequest(job="w", priority=p) for p in ("critical", "low", "normal")]
            )
            with anyio.fail_after(10):
                ev = await events.receive()  # type: ignore[attr-defined]
        assert isinstance(ev, DispatchQueued)
        assert [(d.dispatch_id, d.job, d.priority, d.state, d.source) for d in ev.dispatches] == [
            (ids[0], "w", "critical", "queued", "enqueue"),
            (ids[1], "w", "low", "queued", "enqueue"),
            (ids[2], "w", "normal", "queued", "enqueue"),
        ]
        assert not rt.events.wants(DispatchQueued)  # nobody listens any more


async def test_another_process_enqueue_is_news_too(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets={"who": who}) as rt:
        await rt.add_job(JobSpec(name="w", target="who"))
        async with rt.subscribe(DispatchQueued) as events:
            cmd = [sys.executable, "-m", "shepherd", "--database", db_path, "enqueue", "w"]
            done = await anyio.run_process(cmd, check=False)
            assert done.returncode == 0, done.stderr.decode()
            with anyio.fail_after(20):
                ev = await events.receive()  # type: ignore[attr-defined]
        assert isinstance(ev, DispatchQueued)
        assert [d.job for d in ev.dispatches] == ["w"]


async def test_run_events_name_the_assigned_agent(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path), targets={"who": who}) as rt:
        await rt.add_agent("ops", capabilities=["shell"])
        await rt.add_job(JobSpec(name="sh", target="who", capabilities=["shell"]))
        await rt.add_job(JobSpec(name="free", target="who"))
        async with rt.subscribe(RunStarted, OutcomeEvent) as events:
            a = await rt.enqueue("sh")
            await rt.wait(a)
            b = await rt.enqueue("free")
            await rt.wait(b)
            seen: list[Any] = []
            with anyio.fail_after(10):
                while len(seen) < 4:
                    seen.append(await events.receive())  # type: ignore[attr-defined]
        agents = {(type(e).__name__, e.dispatch_id): e.agent for e in seen}
        assert agents == {
            ("RunStarted", a): "ops",
            ("OutcomeEvent", a): "ops",
            ("RunStarted", b): "",
            ("OutcomeEvent", b): "",
        }


async def test_a_gated_enqueue_is_news_awaiting_approval(db_path: str) -> None:
    from shepherd.store.models import ApprovalPolicy

    spec = JobSpec(
        name="deploy",
        target="who",
        options={"delivery": "none", "delivery_channel": "approvals"},
        approval=ApprovalPolicy(max_pending=1),
    )
    async with Runtime.open(Config(database=db_path), targets={"who": who}) as rt:
        await rt.add_job(spec)
        async with rt.subscribe(DispatchQueued) as events:
            held = await rt.enqueue("deploy")
            await rt.enqueue("deploy")  # past max_pending: cancelled, no news
            with anyio.fail_after(10):
                ev = await events.receive()  # type: ignore[attr-defined]
            assert [(d.dispatch_id, d.state, d.job) for d in ev.dispatches] == [
                (held, "awaiting_approval", "deploy")
            ]
            with pytest.raises(anyio.WouldBlock):  # the news is told before enqueue returns
                events.receive_nowait()  # type: ignore[attr-defined]
