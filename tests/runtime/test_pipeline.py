"""The job → dispatch → run pipeline through the embedded Runtime, on real SQLite files."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from shepherd.actors.messages import OutcomeEvent, RunStarted
from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import (
    Config,
    ConfigError,
    Discard,
    JobSpec,
    NotFound,
    RetryAfter,
    RetryPolicy,
    RunContext,
    Runtime,
)
from shepherd.store.factory import open_store
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


class Gate:
    """A python target that blocks until released, recording what ran."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started: list[Any] = []

    async def __call__(self, ctx: RunContext) -> Any:
        self.started.append(ctx.payload.get("n"))
        await self.release.wait()
        return ctx.payload.get("n")


async def boom(ctx: RunContext) -> None:
    raise ValueError(f"boom on attempt {ctx.attempt}")


async def forever(ctx: RunContext) -> None:
    await anyio.sleep_forever()


async def noop(ctx: RunContext) -> dict[str, Any]:
    return {"attempt": ctx.attempt, "key": ctx.idempotency_key}


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


async def _open(db_path: str, clock: FakeClock | None = None, **kw: Any) -> Any:
    cfg = Config(database=db_path, shutdown_grace=0 if clock else 5, **kw)
    return Runtime.open(cfg, clock=clock, targets=TARGETS)


TARGETS = {"boom": boom, "forever": forever, "noop": noop}


@pytest.fixture
async def rt(db_path: str) -> AsyncIterator[Runtime]:
    async with Runtime.open(Config(database=db_path), targets=TARGETS) as runtime:
        await runtime.add_job(JobSpec(name="noop", target="noop"))
        yield runtime


async def test_enqueue_returns_after_commit(rt: Runtime, db_path: str) -> None:
    dispatch_id = await rt.enqueue("noop", {"a": 1})
    # a separate connection sees the row as soon as enqueue returns
    other = await open_store(db_path)
    try:
        seen = await other.dispatch(dispatch_id)
        assert seen is not None and seen.job_name == "noop"
    finally:
        await other.close()
    final = await rt.wait(dispatch_id, timeout=10)
    assert final.status == "done" and final.outcome == "ok"
    assert final.result == {"attempt": 1, "key": final.idempotency_key or final.result["key"]}


async def test_crash_is_retried_with_backoff_then_dead_lettered(
    db_path: str, clock: FakeClock
) -> None:
    async with await _open(db_path, clock) as rt:
        await rt.add_job(
            JobSpec(
                name="boom", target="boom", retry=RetryPolicy(max_attempts=3, base=10, factor=2)
            )
        )
        t0 = clock.wall()
        dispatch_id = await rt.enqueue("boom")

        async def state() -> Any:
            return await rt.dispatch(dispatch_id)

        await eventually(lambda: _attempt_is(rt, dispatch_id, 1, "queued"), what="attempt 1")
        d = await state()
        assert d.not_before == pytest.approx(t0 + 10, abs=1e-3)  # base
        await clock.advance_when_blocked(10)
        await eventually(lambda: _attempt_is(rt, dispatch_id, 2, "queued"), what="attempt 2")
        d = await state()
        assert d.not_before == pytest.approx(t0 + 10 + 20, abs=1e-3)  # base * factor
        await clock.advance_when_blocked(20)
        final = await rt.wait(dispatch_id, timeout=10)
        assert (final.status, final.dead_reason, final.attempt) == ("dead", "attempts", 3)
        runs = await rt.runs(dispatch_id=dispatch_id)
        assert [r.status for r in runs] == ["crashed"] * 3
        assert runs[0].error == "ValueError: boom on attempt 3"
        assert [d.id for d in await rt.dead_letters()] == [dispatch_id]


async def _attempt_is(rt: Runtime, dispatch_id: int, attempt: int, status: str) -> bool:
    d = await rt.dispatch(dispatch_id)
    return d.attempt == attempt and d.status == status


async def test_retry_after_and_discard(db_path: str, clock: FakeClock) -> None:
    async def later(ctx: RunContext) -> str:
        if ctx.attempt == 1:
            raise RetryAfter(7, "come back later")
        return "second time lucky"

    async def hopeless(ctx: RunContext) -> None:
        raise Discard("bad payload")

    async with await _open(db_path, clock) as rt:
        rt.register("later", later)
        rt.register("hopeless", hopeless)
        await rt.add_job(JobSpec(name="later", target="later"))
        await rt.add_job(JobSpec(name="hopeless", target="hopeless"))
        t0 = clock.wall()
        a = await rt.enqueue("later")
        b = await rt.enqueue("hopeless")
        final_b = await rt.wait(b, timeout=10)
        assert (final_b.status, final_b.dead_reason, final_b.last_error) == (
            "dead",
            "discarded",
            "bad payload",
        )
        await eventually(lambda: _attempt_is(rt, a, 1, "queued"))
        assert (await rt.dispatch(a)).not_before == pytest.approx(t0 + 7, abs=1e-3)
        await clock.advance_when_blocked(7)
        final_a = await rt.wait(a, timeout=10)
        assert final_a.status == "done" and final_a.result == "second time lucky"


async def test_python_run_past_its_timeout_ends_timeout(db_path: str, clock: FakeClock) -> None:
    async with await _open(db_path, clock) as rt:
        await rt.add_job(
            JobSpec(name="forever", target="forever", timeout=5, retry=RetryPolicy(max_attempts=1))
        )
        dispatch_id = await rt.enqueue("forever")
        await eventually(lambda: _attempt_is(rt, dispatch_id, 1, "running"))
        await clock.advance_when_blocked(4.9)
        assert (await rt.dispatch(dispatch_id)).status == "running"
        await clock.advance_when_blocked(0.2)
        final = await rt.wait(dispatch_id, timeout=10)
        assert final.status == "dead"
        (run,) = await rt.runs(dispatch_id=dispatch_id)
        assert run.status == "timeout" and run.timed_out and "5s timeout" in (run.error or "")


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


async def test_shell_timeout_kills_the_whole_process_group(db_path: str) -> None:
    marker = f"shepherd-test-{uuid.uuid4().hex}"
    async with Runtime.open(Config(database=db_path)) as rt:
        # a child and a grandchild both sleeping; the marker makes them findable
        cmd = f"sh -c 'sleep 30; echo {marker}' & sleep 30; echo {marker}"
        await rt.add_job(
            JobSpec(
                name="slow",
                executor="shell",
                target=cmd,
                timeout=1,
                retry=RetryPolicy(max_attempts=1),
            )
        )
        dispatch_id = await rt.enqueue("slow")
        await eventually(lambda: bool(_processes_with(marker)), what="the shell to start")
        final = await rt.wait(dispatch_id, timeout=15)
        (run,) = await rt.runs(dispatch_id=dispatch_id)
        assert run.status == "timeout" and run.timed_out
        assert run.signal == 9 and final.status == "dead"
        await eventually(
            lambda: not _processes_with(marker), timeout=5, what="no process of the group left"
        )


async def test_shell_records_exit_code_and_output(rt: Runtime) -> None:
    await rt.add_job(
        JobSpec(
            name="sh",
            executor="shell",
            target="echo out; echo err >&2; exit 3",
            retry=RetryPolicy(max_attempts=1),
        )
    )
    final = await rt.wait(await rt.enqueue("sh"), timeout=10)
    (run,) = await rt.runs(dispatch_id=final.id)
    assert (run.status, run.exit_code, run.stdout, run.stderr) == ("error", 3, "out", "err")
    assert final.last_error == "Shell exited with code 3: err"


async def test_priority_then_fifo(db_path: str) -> None:
    gate = Gate()
    order: list[str] = []

    async def record(ctx: RunContext) -> None:
        order.append(ctx.payload["n"])

    async with Runtime.open(
        Config(database=db_path, concurrency=1), targets={"gate": gate, "record": record}
    ) as rt:
        await rt.add_job(JobSpec(name="gate", target="gate"))
        await rt.add_job(JobSpec(name="record", target="record"))
        blocker = await rt.enqueue("gate", {"n": "blocker"})
        await eventually(lambda: gate.started == ["blocker"])
        for n, prio in [
            ("low1", "low"),
            ("high1", "high"),
            ("normal1", "normal"),
            ("high2", "high"),
            ("background1", "background"),
            ("critical1", "critical"),
            ("low2", "low"),
        ]:
            await rt.enqueue("record", {"n": n}, priority=prio)
        gate.release.set()
        await rt.wait(blocker, timeout=10)
        await eventually(lambda: len(order) == 7)
        assert order == ["critical1", "high1", "high2", "normal1", "low1", "low2", "background1"]


async def test_cancel_queued_and_running(db_path: str) -> None:
    gate = Gate()
    async with Runtime.open(Config(database=db_path, concurrency=1), targets={"gate": gate}) as rt:
        await rt.add_job(JobSpec(name="gate", target="gate"))
        running = await rt.enqueue("gate", {"n": 1})
        queued = await rt.enqueue("gate", {"n": 2})
        await eventually(lambda: gate.started == [1])
        assert await rt.cancel(queued) == "cancelled"
        assert (await rt.dispatch(queued)).status == "cancelled"
        assert await rt.cancel(running) == "running"
        final = await rt.wait(running, timeout=10)
        assert final.status == "cancelled"
        (run,) = await rt.runs(dispatch_id=running)
        assert run.status == "cancelled" and run.reason == "operator"
        assert gate.started == [1]  # the cancelled queued dispatch never ran
        assert await rt.cancel(999_999) is None


async def test_expired_dispatch_is_dead_lettered_without_running(
    db_path: str, clock: FakeClock
) -> None:
    gate = Gate()
    async with Runtime.open(
        Config(database=db_path, concurrency=1, shutdown_grace=0),
        clock=clock,
        targets={"gate": gate},
    ) as rt:
        await rt.add_job(JobSpec(name="gate", target="gate"))
        first = await rt.enqueue("gate", {"n": 1})
        await eventually(lambda: gate.started == [1])
        late = await rt.enqueue("gate", {"n": 2}, expires_in=5)
        await clock.advance_when_blocked(6)
        gate.release.set()
        await rt.wait(first, timeout=10)
        final = await rt.wait(late, timeout=10)
        assert (final.status, final.dead_reason) == ("dead", "expired")
        assert gate.started == [1]


async def test_dead_letters_retry_and_purge(db_path: str) -> None:
    flaky_ok = False

    async def flaky(ctx: RunContext) -> str:
        if not flaky_ok:
            raise RuntimeError("not yet")
        return "fine"

    async with Runtime.open(Config(database=db_path), targets={"flaky": flaky}) as rt:
        await rt.add_job(JobSpec(name="flaky", target="flaky", retry=RetryPolicy(max_attempts=1)))
        a = await rt.enqueue("flaky")
        b = await rt.enqueue("flaky")
        assert (await rt.wait(a, timeout=10)).status == "dead"
        assert (await rt.wait(b, timeout=10)).status == "dead"
        flaky_ok = True
        assert await rt.retry_dead([a, 12345]) == [a]
        final = await rt.wait(a, timeout=10)
        assert (final.status, final.result, final.attempt) == ("done", "fine", 1)
        assert await rt.purge_dead([b]) == 1
        with pytest.raises(NotFound):
            await rt.dispatch(b)
        assert await rt.runs(dispatch_id=b) == []


async def test_subscribers_see_starts_and_outcomes(rt: Runtime) -> None:
    async with rt.subscribe(RunStarted, OutcomeEvent) as events:
        dispatch_id = await rt.enqueue("noop")
        seen: list[Any] = []
        async for ev in events:
            seen.append(ev)
            if isinstance(ev, OutcomeEvent):
                break
    assert [type(e).__name__ for e in seen] == ["RunStarted", "OutcomeEvent"]
    assert seen[1].dispatch_id == dispatch_id and seen[1].outcome == "ok" and seen[1].final


async def test_batch_enqueue_keeps_order_and_commits_once(rt: Runtime) -> None:
    from shepherd.store.models import EnqueueRequest

    commits = rt.store.commits
    ids = await rt.enqueue_many([EnqueueRequest(job="noop", payload={"i": i}) for i in range(50)])
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert rt.store.commits - commits <= 2  # one transaction (plus maybe a claim batch)
    for i in ids:
        assert (await rt.wait(i, timeout=10)).status == "done"


async def test_bad_input_is_rejected_naming_the_field(rt: Runtime, db_path: str) -> None:
    with pytest.raises(ConfigError, match="priority"):
        await rt.enqueue("noop", priority="urgent")
    with pytest.raises(NotFound):
        await rt.enqueue("no-such-job")
    with pytest.raises(ConfigError, match="executor"):
        await rt.add_job(JobSpec(name="x", executor="telepathy"))
    with pytest.raises(ConfigError, match=r"retry\.max_attempts"):
        await rt.add_job(JobSpec(name="x", retry=RetryPolicy(max_attempts=0)))
    with pytest.raises(ConfigError, match="target"):
        await rt.add_job(JobSpec(name="x", executor="shell"))
    with pytest.raises(ConfigError, match="name"):
        await rt.add_job(JobSpec(name="bad name!"))
    other = await open_store(db_path)
    try:
        assert [j.spec.name for j in await other.jobs()] == ["noop"]
        assert await other.dispatches() == []
    finally:
        await other.close()


@pytest.mark.engines("sqlite")  # PostgreSQL serves several runtimes on one database
async def test_a_second_runtime_on_the_same_file_is_refused(rt: Runtime, db_path: str) -> None:
    from shepherd.store.errors import StoreError

    with pytest.raises(StoreError, match="already served"):
        async with Runtime.open(Config(database=db_path)):
            pass
