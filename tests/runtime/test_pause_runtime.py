"""Pause, resume, drain, and disable vs pause through the embedded Runtime (fake clock,
real SQLite file): paused work stays queued and visible, resume starts it at once, a
pause survives a restart, drain waits for running runs, bad input stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from shepherd.actors.dispatcher.controls import Controls
from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import (
    Config,
    ConfigError,
    EnqueueRequest,
    GatewayConfig,
    JobSpec,
    NotFound,
    RunContext,
    Runtime,
)
from shepherd.store.models import Pause
from tests.actors.dispatcher.helpers import entry

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


class Work:
    """Python targets: ``quick`` returns, ``block`` waits until released."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gate = anyio.Event()

    async def quick(self, ctx: RunContext) -> None:
        self.ran.append(ctx.job.name)

    async def block(self, ctx: RunContext) -> None:
        self.ran.append(ctx.job.name)
        await self.gate.wait()


@pytest.fixture
def work() -> Work:
    return Work()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session(db_path: str, clock: FakeClock, work: Work) -> Callable[..., Any]:
    @asynccontextmanager
    async def open_(**kw: Any) -> AsyncIterator[Runtime]:
        cfg = Config(database=db_path, shutdown_grace=0, health_interval=3600, **kw)
        targets = {"quick": work.quick, "block": work.block}
        async with Runtime.open(cfg, clock=clock, targets=targets) as rt:
            yield rt

    return open_


async def _add(rt: Runtime, *specs: JobSpec) -> None:
    for spec in specs:
        await rt.add_job(spec)


def _waiting(rt: Runtime, key: str) -> int:
    pause = rt.statistics()["dispatcher"]["pauses"].get(key)
    return int(pause["waiting"]) if pause else -1


async def test_a_paused_job_waits_queued_and_visible_and_resume_starts_it_at_once(
    session: Callable[..., Any], clock: FakeClock, work: Work
) -> None:
    async with session() as rt:
        await _add(rt, JobSpec(name="a", target="quick"), JobSpec(name="b", target="quick"))
        pause = await rt.pause("job", "a", reason="maintenance")
        assert (pause.scope, pause.name, pause.reason) == ("job", "a", "maintenance")
        assert pause.paused_at == clock.wall() and pause.by == rt.instance
        held = [await rt.enqueue("a") for _ in range(3)]
        other = await rt.enqueue("b")
        assert (await rt.wait(other, timeout=5)).status == "done"
        await clock.wait_idle()
        assert work.ran == ["b"]
        for d in [await rt.dispatch(i) for i in held]:
            assert (d.status, d.attempt) == ("queued", 0)
        assert _waiting(rt, "job:a") == 3
        assert [p.name for p in await rt.pauses()] == ["a"]

        assert await rt.resume("job", "a") == ["job:a"]
        await clock.wait_idle()  # no time passes: resume admits at once
        assert work.ran == ["b", "a", "a", "a"]
        assert await rt.pauses() == []


@pytest.mark.parametrize(
    ("scope", "name", "held", "free"),
    [
        ("runtime", None, ["a", "p", "s"], []),
        ("pool", "db", ["p"], ["a", "s"]),
        ("executor", "shell", ["s"], ["a", "p"]),
    ],
)
async def test_each_scope_holds_only_its_own(
    session: Callable[..., Any],
    clock: FakeClock,
    work: Work,
    scope: str,
    name: str | None,
    held: list[str],
    free: list[str],
) -> None:
    async with session(pools={"db": 2}) as rt:
        await _add(
            rt,
            JobSpec(name="a", target="quick"),
            JobSpec(name="p", target="quick", pool="db"),
            JobSpec(name="s", executor="shell", target="true"),
        )
        await rt.pause(scope, name)
        ids = {job: await rt.enqueue(job) for job in ("a", "p", "s")}
        for job in free:
            assert (await rt.wait(ids[job], timeout=10)).status == "done"
        await clock.wait_idle()
        for job in held:
            assert (await rt.dispatch(ids[job])).status == "queued"
        await rt.resume(scope, name)
        for job in held:
            assert (await rt.wait(ids[job], timeout=10)).status == "done"


async def test_a_pause_does_not_touch_running_runs(
    session: Callable[..., Any], clock: FakeClock, work: Work
) -> None:
    async with session() as rt:
        await _add(rt, JobSpec(name="slow", target="block", overlap="allow"))
        first = await rt.enqueue("slow")
        await clock.wait_idle()
        assert work.ran == ["slow"]
        await rt.pause("runtime")
        second = await rt.enqueue("slow")
        work.gate.set()
        assert (await rt.wait(first, timeout=10)).status == "done"  # ran to its end
        await clock.wait_idle()
        assert (await rt.dispatch(second)).status == "queued"
        assert _waiting(rt, "runtime") == 1
        await rt.resume("all")
        assert (await rt.wait(second, timeout=10)).status == "done"


async def test_a_pause_survives_a_restart(
    session: Callable[..., Any], clock: FakeClock, work: Work
) -> None:
    async with session() as rt:
        await _add(rt, JobSpec(name="a", target="quick"))
        await rt.pause("job", "a")
        held = await rt.enqueue("a")
    async with session() as rt:
        await clock.wait_idle()
        assert work.ran == []
        assert (await rt.dispatch(held)).status == "queued"
        assert [p.key for p in await rt.pauses()] == ["job:a"]
        await rt.resume("job", "a")
        assert (await rt.wait(held, timeout=10)).status == "done"


async def test_drain_stops_admitting_and_waits_for_running_runs(
    session: Callable[..., Any], clock: FakeClock, work: Work
) -> None:
    async with session() as rt:
        await _add(rt, JobSpec(name="slow", target="block"), JobSpec(name="a", target="quick"))
        running = await rt.enqueue("slow")
        await clock.wait_idle()
        async with anyio.create_task_group() as tg:
            results: list[Any] = []

            async def drain() -> None:
                results.append(await rt.drain())

            tg.start_soon(drain)
            await clock.wait_idle()
            assert results == []  # the slow run is still going
            queued = await rt.enqueue("a")
            work.gate.set()
        [done] = results
        assert (done.drained, done.waited_for, done.running) == (True, 1, 0)
        assert (await rt.dispatch(running)).status == "done"
        await clock.wait_idle()
        assert (await rt.dispatch(queued)).status == "queued"  # drained: still paused
        assert [p.key for p in await rt.pauses()] == ["runtime"]
        await rt.resume("runtime")
        assert (await rt.wait(queued, timeout=10)).status == "done"


async def test_drain_with_a_timeout_reports_what_still_runs(
    session: Callable[..., Any], clock: FakeClock, work: Work
) -> None:
    async with session() as rt:
        await _add(rt, JobSpec(name="slow", target="block"))
        await rt.enqueue("slow")
        await clock.wait_idle()
        async with clock.autojump():
            done = await rt.drain(timeout=5)
        assert (done.drained, done.waited_for, done.running) == (False, 1, 1)
        assert done.seconds == 5
        work.gate.set()
        idle = await rt.drain(timeout=5)
        assert idle.drained and idle.running == 0


async def test_disable_skips_the_queue_and_refuses_enqueue_pause_holds_it(
    session: Callable[..., Any], clock: FakeClock, work: Work
) -> None:
    async with session() as rt:
        await _add(rt, JobSpec(name="d", target="quick"), JobSpec(name="p", target="quick"))
        await rt.pause("runtime")  # hold both while they are set up
        skipped = [await rt.enqueue("d") for _ in range(2)]
        held = [await rt.enqueue("p") for _ in range(2)]
        await rt.disable("d")
        await rt.pause("job", "p")
        await clock.wait_idle()
        for i in skipped:  # disable: dropped (recorded skipped, reason disabled)
            d = await rt.dispatch(i)
            assert (d.status, d.outcome) == ("done", "skipped")
        assert {r.reason for r in await rt.runs(job="d", status="skipped")} == {"disabled"}
        with pytest.raises(ConfigError) as err:
            await rt.enqueue("d")
        assert err.value.field == "job" and "disabled" in str(err.value)
        with pytest.raises(ConfigError):
            await rt.enqueue_many([EnqueueRequest(job="p"), EnqueueRequest(job="d")])
        assert len(await rt.dispatches(limit=100)) == 4  # nothing stored
        forced = await rt.run_now("d")  # an operator's run-now runs a disabled job
        await rt.resume("runtime")
        assert (await rt.wait(forced, timeout=10)).status == "done"
        for i in held:  # pause: kept, and run on resume
            assert (await rt.dispatch(i)).status == "queued"
        await rt.resume("job", "p")
        for i in held:
            assert (await rt.wait(i, timeout=10)).outcome == "ok"
        assert work.ran == ["d", "p", "p"]


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        (("queue", "a"), ConfigError, "scope"),
        (("runtime", "a"), ConfigError, "name"),
        (("job", None), ConfigError, "name"),
        (("job", " "), ConfigError, "name"),
        (("job", "a\x00"), ConfigError, "name"),
        (("job", "nope"), NotFound, None),
        (("pool", "nope"), NotFound, None),
        (("executor", "nope"), NotFound, None),
        (("agent", "nope"), NotFound, None),
    ],
)
async def test_bad_pauses_are_refused_and_nothing_is_stored(
    session: Callable[..., Any], args: tuple[str, str | None], error: type, field: str | None
) -> None:
    async with session() as rt:
        await _add(rt, JobSpec(name="a", target="quick"))
        with pytest.raises(error) as err:
            await rt.pause(*args)
        if field is not None:
            assert err.value.field == field
        with pytest.raises(ConfigError) as err:
            await rt.pause("job", "a", reason="x" * 1001)
        assert err.value.field == "reason"
        assert await rt.pauses() == []
        with pytest.raises(NotFound):
            await rt.resume("job", "a")  # not paused
        with pytest.raises(ConfigError):
            await rt.resume("all", "a")


async def test_known_names_come_from_the_config_and_the_jobs(
    session: Callable[..., Any],
) -> None:
    gateway = GatewayConfig(url="http://127.0.0.1:9")
    async with session(pools={"db": 2}, gateway=gateway) as rt:
        await _add(rt, JobSpec(name="a", target="quick", pool="gpu"))
        await _add(
            rt, JobSpec(name="g", executor="agent", target="helper", payload={"message": "hi"})
        )
        for scope, name in [("pool", "db"), ("pool", "gpu"), ("executor", "python"),
                            ("agent", "helper")]:  # fmt: skip
            assert isinstance(await rt.pause(scope, name), Pause)
        again = await rt.pause("pool", "db", reason="later")  # the first pause stays
        assert again.reason == "later"
        assert sorted(await rt.resume("all")) == [
            "agent:helper", "executor:python", "pool:db", "pool:gpu",
        ]  # fmt: skip


def test_an_agent_pause_holds_the_agent_its_dispatch_talks_to() -> None:
    c = Controls()
    c.load([Pause(scope="agent", name="main", paused_at=0.0)])
    job = JobSpec(name="g", executor="agent")
    assert c.held_key(entry(1), job) == "paused:agent:main"
    assert c.held_key(entry(2, payload={"agent": "other"}), job) is None
    assert c.agent_held("main") == "paused:agent:main" and c.agent_held("x") is None
    assert c.load([]) == ["paused:agent:main"]  # resumed: its waiters go back
