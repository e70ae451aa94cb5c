"""Retention end to end: a runtime with a small ``[retention]`` prunes its own history.

The pruner is a child of the runtime's tree; with a fake clock its first pass comes a
minute after start. Old runs go, the newest N of every job stay, ended dispatches past
their age go, queued ones stay, and the runtime's statistics and ``shepherd status``
say what was pruned.
"""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.retention import RetentionConfig
from shepherd.runtime import ApprovalPolicy, Config, JobSpec, Runtime
from shepherd.runtime._cli_status import _health_lines
from shepherd.store.factory import open_store
from shepherd.store.models import EnqueueRequest, Seconds
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


async def noop(_ctx: Any) -> None:
    return None


async def runs_by_job(rt: Runtime) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for run in sorted(await rt.runs(limit=1000), key=lambda r: r.id):
        out.setdefault(run.job_name, []).append(run.id)
    return out


async def dispatch_states(rt: Runtime) -> list[str]:
    return [d.status for d in sorted(await rt.dispatches(limit=1000), key=lambda d: d.id)]


async def test_a_runtime_keeps_the_newest_runs_per_job_and_prunes_the_rest(
    db_path: str,
) -> None:
    clock = FakeClock()
    retention = RetentionConfig(runs_per_job=3, dispatches_max_age=Seconds(30))
    cfg = Config(database=db_path, shutdown_grace=0, retention=retention)
    async with Runtime.open(cfg, clock=clock, targets={"noop": noop}) as rt:
        for name in ("a", "b", "c"):
            await rt.add_job(JobSpec(name=name, target="noop"))
        for job, n in (("a", 6), ("b", 5), ("c", 2)):
            for _ in range(n):
                await rt.wait(await rt.enqueue(job), timeout=10)
        later = await rt.enqueue("a", delay=3600)  # queued: never pruned
        before = await runs_by_job(rt)
        assert {job: len(ids) for job, ids in before.items()} == {"a": 6, "b": 5, "c": 2}

        await clock.advance_when_blocked(60)  # the first pass: a minute after start
        await eventually(lambda: rt.statistics()["pruner"]["passes"] == 1, what="a pass")

        after = await runs_by_job(rt)
        assert after == {"a": before["a"][-3:], "b": before["b"][-3:], "c": before["c"]}
        # every done dispatch ended more than 30 s ago; the newest row always stays
        assert await dispatch_states(rt) == ["queued"]
        assert (await rt.dispatch(later)).status == "queued"
        stats = rt.statistics()["pruner"]
        assert stats["pruned"]["runs"] == 5 and stats["pruned"]["dispatches"] == 13
        assert stats["checkpoints"] >= 1  # the WAL checkpoint is the pruner's now
    # the last snapshot (written on the way out) carries the pass for `shepherd status`
    instance = await read_instance(db_path)
    assert instance is not None
    line = _health_lines(instance)["retention"]
    assert line.endswith("): 5 runs, 13 dispatches"), line


async def read_instance(db_path: str) -> dict[str, Any] | None:
    store = await open_store(db_path, create=False)
    try:
        return await store.latest_instance()
    finally:
        await store.close(checkpoint=False)


async def test_by_default_the_newest_100_runs_of_a_job_are_kept(db_path: str) -> None:
    clock = FakeClock()
    cfg = Config(database=db_path, shutdown_grace=0)
    async with Runtime.open(cfg, clock=clock, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="a", target="noop"))
        ids = await rt.enqueue_many([EnqueueRequest(job="a") for _ in range(103)])
        for dispatch_id in ids:
            await rt.wait(dispatch_id, timeout=10)
        await clock.advance_when_blocked(61)

        async def pruned() -> bool:
            return len((await runs_by_job(rt))["a"]) == 100

        await eventually(pruned, what="the oldest 3 runs to go")
        assert len(await dispatch_states(rt)) == 103  # done for less than 7 days: kept


async def test_a_runtime_prunes_resolved_approvals_and_ended_groups_only(db_path: str) -> None:
    clock = FakeClock()
    retention = RetentionConfig(approvals_max_age=Seconds(30), groups_max_age=Seconds(30))
    cfg = Config(database=db_path, shutdown_grace=0, retention=retention)
    gate = ApprovalPolicy(timeout=Seconds(3600))
    spec = JobSpec(name="deploy", target="noop", options={"delivery_channel": "ops"}, approval=gate)
    async with Runtime.open(cfg, clock=clock, targets={"noop": noop}) as rt:
        await rt.add_job(spec)
        for _ in range(3):
            await rt.enqueue("deploy")
        first, second, pending = sorted(await rt.approvals(), key=lambda a: a.id)
        await rt.reject(first.id, "no")
        await rt.approve(second.id)
        await rt.wait(second.dispatch_id, timeout=10)
        await rt.create_group("done", ["a"])
        await rt.report("done", "a", "completed")
        await rt.create_group("open", ["a"])

        await clock.advance_when_blocked(60)  # the first pass: resolved 60 s ago
        await eventually(lambda: rt.statistics()["pruner"]["passes"] == 1, what="a pass")

        assert [a.id for a in await rt.approvals()] == [pending.id]  # resolved: gone
        assert [g.name for g in await rt.groups()] == ["open"]
        pruned = rt.statistics()["pruner"]["pruned"]
        assert (pruned["approvals"], pruned["groups"]) == (2, 1)
