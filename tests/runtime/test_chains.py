"""Workflow chains through the embedded Runtime (README "Chains"), on a fake clock."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import (
    Config,
    ConfigError,
    JobSpec,
    RetryPolicy,
    RunContext,
    Runtime,
)
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


class Record:
    """A python target that records the payloads it ran with."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    async def __call__(self, ctx: RunContext) -> str:
        self.payloads.append(dict(ctx.payload))
        return "child ran"


async def ok(ctx: RunContext) -> dict[str, Any]:
    return {"summary": f"report: {ctx.payload.get('text', 'all fine')}"}


async def boom(ctx: RunContext) -> None:
    raise ValueError(f"boom on attempt {ctx.attempt}")


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


def _open(db_path: str, clock: FakeClock, rec: Record) -> Any:
    cfg = Config(database=db_path, shutdown_grace=0)
    return Runtime.open(cfg, clock=clock, targets={"ok": ok, "boom": boom, "rec": rec})


def child(name: str, parent: str, on: str, **kw: Any) -> JobSpec:
    return JobSpec(name=name, target="rec", parent=parent, trigger_on=on, **kw)  # type: ignore[arg-type]


async def _chains(rt: Runtime, job: str) -> list[Any]:
    return [d for d in await rt.dispatches(job=job) if d.kind == "chain"]


async def test_success_and_complete_children_fire_with_trigger_context(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="parent", target="ok"))
        await rt.add_job(child("on-ok", "parent", "success", payload={"x": 1}))
        await rt.add_job(child("on-any", "parent", "complete"))
        await rt.add_job(child("on-fail", "parent", "failure"))
        d = await rt.enqueue("parent", {"text": "42 rows"})
        await rt.wait(d, timeout=10)
        [parent_run] = await rt.runs(dispatch_id=d)
        await eventually(lambda: _n(rec, 2), what="two children ran")
        [c] = await _chains(rt, "on-ok")
        assert (c.kind, c.parent_run_id) == ("chain", parent_run.id)
        done = await rt.wait(c.id, timeout=10)
        assert done.status == "done"
        trigger = c.payload["trigger"]
        assert c.payload["x"] == 1  # the child's own payload, plus the trigger
        assert trigger["parent_job"] == "parent"
        assert trigger["parent_run_id"] == parent_run.id
        assert trigger["dispatch_id"] == d
        assert trigger["status"] == "ok"
        assert trigger["output"] == "report: 42 rows"
        assert len(await _chains(rt, "on-any")) == 1
        assert await _chains(rt, "on-fail") == []


async def _n(rec: Record, n: int) -> bool:
    return len(rec.payloads) >= n


async def test_failure_children_fire_only_after_retries_exhausted(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        retry = RetryPolicy(max_attempts=3, base=10, factor=1)
        await rt.add_job(JobSpec(name="flaky", target="boom", retry=retry))
        await rt.add_job(child("cleanup", "flaky", "failure"))
        await rt.add_job(child("always", "flaky", "complete"))
        await rt.add_job(child("report", "flaky", "success"))
        d = await rt.enqueue("flaky")
        for attempt in (1, 2):
            await eventually(lambda a=attempt: _attempt(rt, d, a), what=f"attempt {attempt}")
            assert await _chains(rt, "cleanup") == []  # not while a retry is pending
            await clock.advance_when_blocked(10)
        final = await rt.wait(d, timeout=10)
        assert (final.status, final.attempt) == ("dead", 3)
        runs = await rt.runs(dispatch_id=d)
        last = max(r.id for r in runs)
        [c] = await _chains(rt, "cleanup")
        assert c.parent_run_id == last  # linked to the final failed run
        assert c.payload["trigger"]["status"] == "crashed"
        assert "boom on attempt 3" in c.payload["trigger"]["error"]
        assert len(await _chains(rt, "always")) == 1
        assert await _chains(rt, "report") == []


async def _attempt(rt: Runtime, d: int, attempt: int) -> bool:
    x = await rt.dispatch(d)
    return x.attempt == attempt and x.status == "queued"


async def test_trigger_delay_holds_the_child(db_path: str, clock: FakeClock) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok"))
        await rt.add_job(child("later", "p", "success", trigger_delay=60))
        d = await rt.enqueue("p")
        done = await rt.wait(d, timeout=10)
        [c] = await _chains(rt, "later")
        assert c.not_before == pytest.approx(done.updated_at + 60, abs=1e-3)
        await clock.advance_when_blocked(59)
        assert rec.payloads == [] and (await rt.dispatch(c.id)).status == "queued"
        await clock.advance_when_blocked(1)
        assert (await rt.wait(c.id, timeout=10)).status == "done"
        assert len(rec.payloads) == 1


async def test_conditions_match_the_parent_output(db_path: str, clock: FakeClock) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok"))
        await rt.add_job(child("has-err", "p", "success", trigger_condition="contains:ERROR"))
        await rt.add_job(child("case", "p", "success", trigger_condition="contains:error"))
        await rt.add_job(child("rx", "p", "success", trigger_condition=r"regex:\d+ rows"))
        await rt.add_job(child("rx-no", "p", "success", trigger_condition=r"regex:^rows"))
        await rt.wait(await rt.enqueue("p", {"text": "ERROR in 12 rows"}), timeout=10)
        assert len(await _chains(rt, "has-err")) == 1
        assert await _chains(rt, "case") == []  # case-sensitive
        assert len(await _chains(rt, "rx")) == 1
        assert await _chains(rt, "rx-no") == []


async def test_fanout_cap_applies_before_the_condition_and_is_recorded(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok", max_fanout=2))
        await rt.add_job(child("a", "p", "success", trigger_condition="contains:nothing"))
        await rt.add_job(child("b", "p", "success"))
        await rt.add_job(child("c", "p", "success"))
        await rt.wait(await rt.enqueue("p"), timeout=10)
        # a and b are the two candidates (by age); a's condition fails; c is over the cap
        assert await _chains(rt, "a") == []
        assert len(await _chains(rt, "b")) == 1
        assert await _chains(rt, "c") == []
        [skip] = await rt.runs(job="c")
        assert (skip.status, skip.reason) == ("skipped", "chain-fanout")


async def test_child_backlog_is_bounded_and_a_skip_is_recorded(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok"))
        await rt.add_job(child("slow", "p", "success", trigger_delay=3600, max_queued=1))
        await rt.wait(await rt.enqueue("p"), timeout=10)
        await rt.wait(await rt.enqueue("p"), timeout=10)
        assert len(await _chains(rt, "slow")) == 1
        [skip] = await rt.runs(job="slow")
        assert (skip.status, skip.reason) == ("skipped", "chain-backlog")
        assert "max_queued 1" in (skip.error or "")


async def test_cancelled_parent_fires_no_children_and_disabled_child_never(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok"))
        await rt.add_job(child("any", "p", "complete"))
        await rt.add_job(child("off", "p", "complete", enabled=False))
        d = await rt.enqueue("p", delay=30)
        assert await rt.cancel(d) == "cancelled"
        await rt.wait(await rt.enqueue("p"), timeout=10)
        assert len(await _chains(rt, "any")) == 1  # the second parent only
        assert await _chains(rt, "off") == []


async def test_cancel_cascade_reaches_children_not_yet_started(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok"))
        await rt.add_job(child("c1", "p", "success", trigger_delay=60))
        await rt.add_job(child("c2", "p", "success", trigger_delay=60))
        d1 = await rt.enqueue("p")
        await rt.wait(d1, timeout=10)
        d2 = await rt.enqueue("p")
        await rt.wait(d2, timeout=10)
        assert await rt.cancel(d1) == "done"  # no cascade: the children stay
        assert all(c.status == "queued" for c in await _chains(rt, "c1"))
        await rt.cancel(d1, cascade=True)
        mine = {c.job_name: c for c in await rt.dispatches() if c.kind == "chain"}
        ours = [c for c in await rt.dispatches() if c.kind == "chain"]
        by_parent = {(c.job_name, c.parent_run_id): c.status for c in ours}
        [r1] = await rt.runs(dispatch_id=d1)
        [r2] = await rt.runs(dispatch_id=d2)
        assert by_parent[("c1", r1.id)] == by_parent[("c2", r1.id)] == "cancelled"
        assert by_parent[("c1", r2.id)] == by_parent[("c2", r2.id)] == "queued"
        assert mine
        await clock.advance_when_blocked(60)
        await eventually(lambda: _n(rec, 2), what="the other parent's children ran")
        assert len(rec.payloads) == 2


async def test_a_child_never_fires_from_a_schedule_and_keys_are_system_made(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok"))
        row = await rt.add_job(child("c", "p", "success"))
        assert row.next_run_at is None
        await rt.wait(await rt.enqueue("p"), timeout=10)
        [c] = await _chains(rt, "c")
        assert c.idempotency_key is not None and c.idempotency_key.startswith("sys:chain:")
        with pytest.raises(ConfigError) as err:
            await rt.enqueue("c", idempotency_key=c.idempotency_key)
        assert err.value.field == "idempotency_key"


# -- bad input: each names its field and stores nothing ---------------------------------


def _jobs(db_path: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT name, parent, spec FROM jobs ORDER BY id").fetchall()


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (dict(parent="ghost", trigger_on="success"), "parent", "unknown parent job 'ghost'"),
        (dict(parent="x", trigger_on="success"), "parent", "cycle x → x"),
        (dict(parent="a"), "trigger_on", "needs trigger_on"),
        (dict(trigger_on="success"), "trigger_on", "only a child"),
        (dict(trigger_condition="contains:x"), "trigger_condition", "only a child"),
        (dict(trigger_delay=5), "trigger_delay", "only a child"),
        (
            dict(parent="a", trigger_on="success", trigger_condition="foo:bar"),
            "trigger_condition",
            "expected 'contains:TEXT' or 'regex:PATTERN'",
        ),
        (
            dict(parent="a", trigger_on="success", trigger_condition="regex:("),
            "trigger_condition",
            "invalid regular expression",
        ),
        (
            dict(parent="a", trigger_on="success", trigger_condition="contains:"),
            "trigger_condition",
            "must not be empty",
        ),
        (
            dict(parent="a", trigger_on="success", trigger_condition="contains:" + "x" * 1020),
            "trigger_condition",
            "at most 1024",
        ),
        (dict(parent="a", trigger_on="success", cron="* * * * *"), "cron", "never from a"),
        (dict(parent="a", trigger_on="success", every=60), "every", "never from a"),
    ],
)
@pytest.mark.engines("sqlite")  # reads the file with sqlite3
async def test_bad_chain_fields_name_the_field_and_store_nothing(
    db_path: str, clock: FakeClock, spec: dict[str, Any], field: str, words: str
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="a", target="ok"))
        before = _jobs(db_path)
        with pytest.raises(ConfigError) as err:
            await rt.add_job(JobSpec(name="x", target="rec", **spec))
        assert err.value.field == field
        assert words in str(err.value)
        assert _jobs(db_path) == before


@pytest.mark.engines("sqlite")  # reads the file with sqlite3
async def test_cycles_and_depth_are_refused_with_the_path(db_path: str, clock: FakeClock) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="j0", target="ok"))
        for i in range(1, 11):  # depth 10 is the deepest a job may be
            await rt.add_job(child(f"j{i}", f"j{i - 1}", "success"))
        before = _jobs(db_path)
        with pytest.raises(ConfigError) as err:
            await rt.add_job(child("j11", "j10", "success"))
        assert err.value.field == "parent"
        assert "depth 11 > 10: j0 → j1 → " in str(err.value) and "→ j10 → j11" in str(err.value)
        with pytest.raises(ConfigError) as err:  # making the root a child of its leaf
            await rt.update_job("j0", parent="j10", trigger_on="success")
        assert err.value.field == "parent"
        assert "cycle j0 → j10 → j9" in str(err.value) and str(err.value).endswith("j1 → j0")
        await rt.add_job(JobSpec(name="other", target="ok"))
        await rt.add_job(child("o1", "other", "success"))
        with pytest.raises(ConfigError) as err:  # other would be at depth 10, o1 at 11
            await rt.update_job("other", parent="j9", trigger_on="success")
        assert "depth 11 > 10" in str(err.value) and "children below 'other'" in str(err.value)
        after = _jobs(db_path)
        assert after[: len(before)] == before
        assert [r[1] for r in after[len(before) :]] == [None, "other"]


@pytest.mark.engines("sqlite")  # reads the file with sqlite3
async def test_removing_a_parent_is_refused_naming_its_children(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    async with _open(db_path, clock, rec) as rt:
        await rt.add_job(JobSpec(name="p", target="ok"))
        await rt.add_job(child("c2", "p", "success"))
        await rt.add_job(child("c1", "p", "failure"))
        with pytest.raises(ConfigError) as err:
            await rt.remove_job("p")
        assert err.value.field == "name" and "parent of c1, c2" in str(err.value)
        assert [r[0] for r in _jobs(db_path)] == ["p", "c2", "c1"]
        await rt.remove_job("c1")
        await rt.update_job("c2", parent=None, trigger_on=None)  # promoted to a root
        await rt.remove_job("p")
        assert [r[0:2] for r in _jobs(db_path)] == [("c2", None)]


async def test_config_jobs_may_list_a_child_before_its_parent(
    db_path: str, clock: FakeClock
) -> None:
    rec = Record()
    jobs = [child("c", "p", "success"), JobSpec(name="p", target="ok")]
    cfg = Config(database=db_path, shutdown_grace=0, jobs=jobs)
    async with Runtime.open(cfg, clock=clock, targets={"ok": ok, "rec": rec}) as rt:
        await rt.wait(await rt.enqueue("p"), timeout=10)
        await eventually(lambda: _n(rec, 1), what="the child ran")


async def test_a_config_child_of_no_job_stops_the_start_naming_it(
    db_path: str, clock: FakeClock
) -> None:
    jobs = [JobSpec(name="p", target="ok"), child("c", "ghost", "success")]
    cfg = Config(database=db_path, shutdown_grace=0, jobs=jobs)
    with pytest.raises(ConfigError) as err:
        async with Runtime.open(cfg, clock=clock, targets={"ok": ok, "rec": Record()}):
            pass
    assert err.value.field == "config: jobs[1] (c)"
    assert "parent: unknown parent job 'ghost'" in str(err.value)
