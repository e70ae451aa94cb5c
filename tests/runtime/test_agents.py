"""The agents registry and capability-based assignment through the embedded Runtime
(README "Agents"; Dispatch's broker scenarios, SEMANTICS 2.10 / D14)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from shepherd.actors.dispatcher.rates import RateLimit, RatesConfig
from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import (
    Config,
    ConfigError,
    JobSpec,
    NotFound,
    RetryPolicy,
    RunContext,
    Runtime,
)
from shepherd.runtime.config import load_config
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


class Gate:
    """A python target that records its run's agent and blocks until released."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.agents: list[str | None] = []
        self.running = 0

    async def __call__(self, ctx: RunContext) -> Any:
        self.agents.append(ctx.agent)
        self.running += 1
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return ctx.agent


async def who(ctx: RunContext) -> Any:
    return ctx.agent


async def boom(ctx: RunContext) -> None:
    raise ValueError("boom")


async def forever(ctx: RunContext) -> None:
    await anyio.sleep_forever()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def rt(db_path: str, gate: Gate) -> AsyncIterator[Runtime]:
    targets = {"who": who, "gate": gate, "boom": boom, "forever": forever}
    cfg = Config(database=db_path, shutdown_grace=0)
    async with Runtime.open(cfg, targets=targets) as runtime:
        yield runtime


def _waits(
    rt: Runtime, dispatch_id: int, reason: str | None = None
) -> Callable[[], Awaitable[bool]]:
    """Whether the dispatch waits, with ``reason`` (None: any reason)."""

    async def check() -> bool:
        got = (await rt.dispatch(dispatch_id)).wait_reason
        return got is not None and reason in (None, got)

    return check


async def test_routes_by_capability_to_three_agents(rt: Runtime) -> None:
    await rt.add_agent("coder", capabilities=["Python", "git"])
    await rt.add_agent("artist", capabilities=["images"])
    await rt.add_agent("ops", capabilities=["shell", "git"])
    for name, caps in (("py", ["python"]), ("img", ["IMAGES"]), ("sh", ["shell"])):
        await rt.add_job(JobSpec(name=name, target="who", capabilities=caps))
    got = {}
    for job in ("py", "img", "sh"):
        d = await rt.wait(await rt.enqueue(job))
        assert d.status == "done"
        got[job] = (d.result, d.agent)
    assert got == {"py": ("coder", "coder"), "img": ("artist", "artist"), "sh": ("ops", "ops")}
    # a dispatch's own requirement adds to its job's: git + shell is only ops
    d = await rt.wait(await rt.enqueue("py", capabilities=["git"]))
    assert d.result == "coder"
    await rt.add_job(JobSpec(name="any", target="who"))
    d = await rt.wait(await rt.enqueue("any", capabilities=["git", "shell"]))
    assert d.result == "ops" and d.needs == ["git", "shell"]
    [run] = await rt.runs(dispatch_id=d.id)
    assert run.agent == "ops"


async def test_unmatched_waits_visibly_then_runs_when_an_agent_appears(rt: Runtime) -> None:
    await rt.add_job(JobSpec(name="gpu", target="who", capabilities=["gpu", "cuda"]))
    dispatch_id = await rt.enqueue("gpu")
    reason = "unmatched: needs [cuda, gpu]"
    await eventually(_waits(rt, dispatch_id, reason), what="reason")
    assert (await rt.dispatch(dispatch_id)).status == "queued"
    stats = rt.statistics()["dispatcher"]["agents"]
    assert stats["unmatched"] == {reason: 1}
    await rt.add_agent("cpu-box", capabilities=["cpu"])  # not eligible: still waits
    await rt.add_agent("gpu-box", capabilities=["gpu", "cuda", "cpu"])
    d = await rt.wait(dispatch_id)
    assert d.status == "done" and d.result == "gpu-box" and d.wait_reason is None


async def test_wildcard_agent_takes_anything(rt: Runtime) -> None:
    await rt.add_agent("main", capabilities=["*"])
    await rt.add_job(JobSpec(name="x", target="who", capabilities=["whatever:v2"]))
    assert (await rt.wait(await rt.enqueue("x"))).result == "main"


async def test_per_agent_limit_holds_and_a_freed_slot_is_handed_on(rt: Runtime, gate: Gate) -> None:
    await rt.add_agent("solo", capabilities=["a"], max_concurrent=1)
    await rt.add_job(JobSpec(name="g", target="gate", capabilities=["a"]))
    first = await rt.enqueue("g")
    second = await rt.enqueue("g")
    await eventually(lambda: gate.running == 1, what="first run")
    await anyio.wait_all_tasks_blocked()
    assert (await rt.dispatch(second)).status == "queued"
    assert gate.running == 1
    gate.release.set()
    assert (await rt.wait(first)).status == "done"
    assert (await rt.wait(second)).status == "done"
    assert gate.agents == ["solo", "solo"]


async def test_best_score_wins_and_busy_agents_are_passed_over(rt: Runtime, gate: Gate) -> None:
    # always-on ready (1.0) beats on-demand ready (0.9); while busy (0.5) it loses
    await rt.add_agent("b-always", capabilities=["a"])
    await rt.add_agent("a-demand", capabilities=["a"], policy="on-demand")
    await rt.add_job(JobSpec(name="g", target="gate", capabilities=["a"]))
    await rt.enqueue("g")
    await eventually(lambda: len(gate.agents) == 1)
    await rt.enqueue("g")
    await eventually(lambda: len(gate.agents) == 2)
    assert gate.agents == ["b-always", "a-demand"]
    gate.release.set()


async def test_drain_gives_nothing_new_and_undrain_resumes(rt: Runtime) -> None:
    await rt.add_agent("w", capabilities=["a"])
    await rt.add_job(JobSpec(name="j", target="who", capabilities=["a"]))
    drained = await rt.drain_agent("w")
    assert drained.status == "draining"
    dispatch_id = await rt.enqueue("j")
    await eventually(_waits(rt, dispatch_id))
    assert (await rt.dispatch(dispatch_id)).status == "queued"
    assert (await rt.undrain_agent("w")).status == "ready"
    assert (await rt.wait(dispatch_id)).result == "w"


async def test_degraded_after_consecutive_failures_never_chosen(rt: Runtime) -> None:
    await rt.add_agent("flaky", capabilities=["a"])
    await rt.add_job(
        JobSpec(name="bad", target="boom", capabilities=["a"], retry=RetryPolicy(max_attempts=1))
    )
    for _ in range(5):
        assert (await rt.wait(await rt.enqueue("bad"))).status == "dead"
    await eventually(lambda: _status(rt, "flaky", "degraded"), what="degraded")
    await rt.add_job(JobSpec(name="ok", target="who", capabilities=["a"]))
    waiting = await rt.enqueue("ok")
    await rt.add_agent("steady", capabilities=["a"])
    assert (await rt.wait(waiting)).result == "steady"
    # a heartbeat brings it back
    assert (await rt.agent_heartbeat("flaky")).status == "ready"


async def _status(rt: Runtime, agent_id: str, status: str) -> bool:
    return (await rt.agent(agent_id)).status == status


async def test_offline_mid_run_follows_the_delivery_guarantee(rt: Runtime, gate: Gate) -> None:
    await rt.add_agent("a1", capabilities=["x"], max_concurrent=1)
    await rt.add_job(
        JobSpec(name="once", target="gate", capabilities=["x"], delivery_guarantee="at-most-once")
    )
    await rt.add_job(
        JobSpec(name="least", target="gate", capabilities=["x"], delivery_guarantee="at-least-once")
    )
    most = await rt.enqueue("once")
    await eventually(lambda: gate.running == 1)
    await rt.update_agent("a1", status="offline")
    d = await rt.wait(most)
    assert d.status == "cancelled"
    await rt.update_agent("a1", status="ready")
    least = await rt.enqueue("least")
    await eventually(lambda: gate.running == 1)
    await rt.update_agent("a1", status="offline")
    await rt.add_agent("a2", capabilities=["x"])
    gate.release.set()
    d = await rt.wait(least)
    assert d.status == "done" and d.result == "a2" and d.attempt == 2
    runs = sorted(await rt.runs(dispatch_id=least), key=lambda r: r.id)
    assert [(r.agent, r.status) for r in runs] == [("a1", "cancelled"), ("a2", "ok")]


async def test_timed_out_runs_retry_then_dead_letter(rt: Runtime) -> None:
    await rt.add_agent("slow", capabilities=["a"])
    await rt.add_job(
        JobSpec(
            name="t",
            target="forever",
            capabilities=["a"],
            timeout=0.05,
            retry=RetryPolicy(max_attempts=3, base=0.001),
        )
    )
    d = await rt.wait(await rt.enqueue("t"))
    assert (d.status, d.dead_reason, d.attempt, d.agent) == ("dead", "attempts", 3, "slow")
    runs = await rt.runs(dispatch_id=d.id)
    assert sorted(r.status for r in runs) == ["timeout"] * 3


# -- bad input: the error names the field, nothing is stored ---------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"capabilities": ["ok", ""]}, "capabilities[1]"),
        ({"capabilities": ["has space"]}, "capabilities[0]"),
        ({"capabilities": ["-lead"]}, "capabilities[0]"),
        ({"capabilities": ["x" * 65]}, "capabilities[0]"),
        ({"capabilities": "gpu"}, "capabilities"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"policy": "sometimes"}, "policy"),
        ({"status": "draining"}, "status"),
    ],
)
async def test_bad_agent_input_names_the_field(
    rt: Runtime, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as err:
        await rt.add_agent("a", **kwargs)
    assert err.value.field == field
    assert await rt.agents() == []


async def test_unknown_agents_and_bad_ids(rt: Runtime) -> None:
    for call in (rt.drain_agent, rt.undrain_agent, rt.remove_agent, rt.agent_heartbeat, rt.agent):
        with pytest.raises(NotFound):
            await call("ghost")
    with pytest.raises(NotFound):
        await rt.update_agent("ghost", max_concurrent=2)
    with pytest.raises(ConfigError) as err:
        await rt.add_agent("bad id")
    assert err.value.field == "id"
    await rt.add_agent("a")
    with pytest.raises(ConfigError) as err:
        await rt.add_agent("a")
    assert err.value.field == "id"
    with pytest.raises(ConfigError) as err:
        await rt.update_agent("a", max_concurrent=0)
    assert err.value.field == "max_concurrent"
    with pytest.raises(ConfigError) as err:
        await rt.update_agent("a", colour="red")
    assert err.value.field == "colour"
    assert (await rt.agent("a")).max_concurrent == 3
    with pytest.raises(ConfigError) as err:
        await rt.add_job(JobSpec(name="j", target="who", capabilities=["UPPER OK?"]))
    assert err.value.field == "capabilities[0]"
    await rt.add_job(JobSpec(name="j", target="who"))
    with pytest.raises(ConfigError) as err:
        await rt.enqueue("j", capabilities=["*"])
    assert err.value.field == "capabilities"
    assert await rt.dispatches() == []


async def test_remove_and_update(rt: Runtime) -> None:
    a = await rt.add_agent("a", name="Alpha", capabilities=["X", "y", "x"], model="m1")
    assert (a.name, a.capabilities, a.status, a.policy, a.max_concurrent) == (
        "Alpha",
        ["x", "y"],
        "ready",
        "always-on",
        3,
    )
    b = await rt.update_agent("a", capabilities=["z"], max_concurrent=5)
    assert (b.capabilities, b.max_concurrent, b.model) == (["z"], 5, "m1")
    await rt.remove_agent("a")
    assert await rt.agents() == []
    await rt.add_agent("a")  # the id may be used again
    assert [x.id for x in await rt.agents()] == ["a"]


# -- config and liveness ---------------------------------------------------------------


async def test_config_agents_owner_filter_and_liveness(db_path: str) -> None:
    clock = FakeClock()
    conf = load_config(
        None,
        env={},
        database=db_path,
        shutdown_grace=0,
        health_interval=1,
        agents={
            "agent": [
                {"id": "alice-box", "capabilities": ["a"]},
                {"id": "bob-box", "capabilities": ["a"]},
            ],
            "owner_filter": {"bob": ["bob-box"]},
            "offline_after": "10s",
        },
    )
    async with Runtime.open(conf, targets={"who": who}, clock=clock) as rt:
        assert [a.id for a in await rt.agents()] == ["alice-box", "bob-box"]
        await rt.add_job(JobSpec(name="j", target="who", capabilities=["a"]))
        d = await rt.wait(await rt.enqueue("j", owner="bob"))
        assert d.result == "bob-box"
        # liveness: a heartbeat, then silence past offline_after → offline
        await rt.agent_heartbeat("alice-box")
        for _ in range(15):
            await clock.advance_when_blocked(1.0)
        assert (await rt.agent("alice-box")).status == "offline"
        assert (await rt.agent("bob-box")).status == "ready"  # never heartbeat: not judged
        assert (await rt.agent_heartbeat("alice-box")).status == "ready"


async def test_an_agent_updated_to_cover_a_need_takes_its_waiters(rt: Runtime) -> None:
    await rt.add_agent("w", capabilities=["a"])
    await rt.add_job(JobSpec(name="j", target="who", capabilities=["b"]))
    ids = [await rt.enqueue("j") for _ in range(4)]
    await eventually(
        lambda: rt.statistics()["dispatcher"]["agents"]["unmatched"] == {"unmatched: needs [b]": 4}
    )
    await rt.update_agent("w", capabilities=["a", "b"])
    assert [(await rt.wait(d)).result for d in ids] == ["w"] * 4


async def test_a_sleeping_winner_is_woken_by_its_hook(rt: Runtime, tmp_path: Any) -> None:
    marker = tmp_path / "woken"
    await rt.add_agent("sleepy", capabilities=["a"], status="sleeping", wake=f"touch {marker}")
    await rt.add_job(JobSpec(name="j", target="who", capabilities=["a"]))
    d = await rt.wait(await rt.enqueue("j"), timeout=10)
    assert d.result == "sleepy" and marker.exists()
    assert (await rt.agent("sleepy")).status == "ready"
    # a hook that fails: the dispatch stays queued, with the reason
    await rt.add_agent("dead", capabilities=["b"], status="sleeping", wake="exit 3")
    await rt.add_job(JobSpec(name="k", target="who", capabilities=["b"]))
    waiting = await rt.enqueue("k")
    reason = "waking failed: dead"
    await eventually(_waits(rt, waiting, reason), what="waking failed")
    assert (await rt.dispatch(waiting)).status == "queued"
    await rt.agent_heartbeat("dead", status="ready")  # awake after all: it takes it
    assert (await rt.wait(waiting, timeout=10)).result == "dead"


async def test_the_assigned_agents_rate_limit_and_pause_hold_its_dispatches(db_path: str) -> None:
    """``[rates] agent.<id>`` and ``pause agent <id>`` apply to the agent assignment chose
    for a capability-routed dispatch (not to the job's target)."""
    clock = FakeClock()
    cfg = Config(
        database=db_path, shutdown_grace=0, health_interval=3600,
        rates=RatesConfig(agent={"coder": RateLimit(rate="1/s", burst=1)}),
    )  # fmt: skip
    async with Runtime.open(cfg, clock=clock, targets={"who": who}) as rt:
        await rt.add_agent("coder", capabilities=["python"])
        await rt.add_job(JobSpec(name="py", target="who", capabilities=["python"]))
        ids = [await rt.enqueue("py") for _ in range(3)]
        await clock.wait_idle()
        states = [(await rt.dispatch(i)).status for i in ids]
        assert states == ["done", "queued", "queued"]  # one token, the rest wait for coder
        await clock.advance_when_blocked(1.0)
        await clock.wait_idle()
        assert (await rt.dispatch(ids[1])).status == "done"
        await rt.pause("agent", "coder")
        await clock.advance_when_blocked(5.0)
        await clock.wait_idle()
        assert (await rt.dispatch(ids[2])).status == "queued"  # paused: held, not dropped
        await rt.resume("agent", "coder")
        assert (await rt.wait(ids[2], timeout=10)).agent == "coder"
