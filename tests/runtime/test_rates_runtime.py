"""Rate limits through the embedded Runtime with a fake clock: exact token counts, the
timer (not a poll) that admits the next one, no attempt spent, visible in statistics;
config buckets; bad rates refused with the field named and nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from fractions import Fraction
from typing import Any

import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import Config, ConfigError, EnqueueRequest, JobSpec, RunContext, Runtime
from shepherd.runtime.config import load_config

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

T0 = 1_700_000_000.0


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.started: list[float] = []

    async def __call__(self, ctx: RunContext) -> None:
        self.started.append(self.clock.wall())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=T0)


@pytest.fixture
def rec(clock: FakeClock) -> Recorder:
    return Recorder(clock)


@pytest.fixture
def session(db_path: str, clock: FakeClock, rec: Recorder) -> Callable[..., Any]:
    @asynccontextmanager
    async def open_(**kw: Any) -> AsyncIterator[Runtime]:
        cfg = Config(database=db_path, shutdown_grace=0, health_interval=3600, **kw)
        async with Runtime.open(cfg, clock=clock, targets={"rec": rec}) as rt:
            yield rt

    return open_


async def _step_to_next_timer(clock: FakeClock) -> None:
    deadline = clock.next_deadline()
    assert deadline is not None
    await clock.advance_when_blocked(deadline - clock.now())


async def test_burst_at_once_then_exactly_one_per_100ms_none_early(
    session: Callable[..., Any], clock: FakeClock, rec: Recorder
) -> None:
    async with session() as rt:
        row = await rt.add_job(JobSpec(name="r", target="rec", rate="10/s", burst=20))
        ids = await rt.enqueue_many([EnqueueRequest(job="r") for _ in range(26)])
        await clock.wait_idle()
        assert rec.started == [T0] * 20  # the burst, at once
        waiting = [await rt.dispatch(i) for i in ids[20:]]
        assert {(d.status, d.attempt) for d in waiting} == {("queued", 0)}  # none spent

        for k in range(1, 7):
            await clock.advance_when_blocked(0.099)  # not yet: 99 ms after the last
            assert len(rec.started) == 19 + k
            await _step_to_next_timer(clock)  # the dispatcher's one timer: the token
            assert len(rec.started) == 20 + k
            exact = Fraction(T0) + Fraction(k, 10)
            assert exact <= Fraction(rec.started[-1]) < exact + Fraction(1, 10**6)

        for i in ids:
            d = await rt.wait(i, timeout=10)
            assert (d.status, d.attempt) == ("done", 1)  # one attempt each, none spent
        bucket = rt.rates()[f"job:{row.id}"]
        assert bucket["rate"] == "10/s" and bucket["burst"] == 20 and bucket["taken"] == 26
        assert bucket["deferred"] >= 6 and bucket["tokens"] < 1
        assert rt.statistics()["dispatcher"]["rates"] == rt.rates()


async def test_config_buckets_per_executor_and_pool(
    session: Callable[..., Any], clock: FakeClock, rec: Recorder
) -> None:
    cfg_rates = {"executor": {"python": {"rate": "2/s"}}, "pool": {"db": {"rate": "60/m"}}}
    rates = load_config(None, env={}, database="x.db", rates=cfg_rates).rates
    async with session(rates=rates, pools={"db": 5}) as rt:
        await rt.add_job(JobSpec(name="a", target="rec"))
        await rt.add_job(JobSpec(name="b", target="rec", pool="db"))
        await rt.enqueue_many([EnqueueRequest(job="b") for _ in range(2)])
        await rt.enqueue_many([EnqueueRequest(job="a") for _ in range(2)])
        await clock.wait_idle()
        # b: one from the pool's bucket of 1; a: the executor's second token
        assert len(rec.started) == 2
        assert set(rt.rates()) == {"executor:python", "pool:db"}
        await clock.advance_when_blocked(0.5)  # the executor's next token: a's second
        assert len(rec.started) == 3
        await clock.advance_when_blocked(0.5)  # 1 s: the pool's next token and another
        assert len(rec.started) == 4


async def test_a_changed_job_rate_is_a_new_bucket_from_the_next_look(
    session: Callable[..., Any], clock: FakeClock, rec: Recorder
) -> None:
    async with session() as rt:
        await rt.add_job(JobSpec(name="r", target="rec", rate="1/h"))
        await rt.enqueue_many([EnqueueRequest(job="r") for _ in range(3)])
        await clock.wait_idle()
        assert len(rec.started) == 1
        await rt.update_job("r", rate="10/s", burst=5)
        await clock.wait_idle()
        # its waiters were deferred an hour; the new bucket admits them on their timer
        await clock.advance_when_blocked(3600)
        assert len(rec.started) == 3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rate": "10/parsec"}, "rate"),
        ({"rate": "0/s"}, "rate"),
        ({"rate": "10/s", "burst": 0}, "burst"),
        ({"rate": "10/s", "burst": 2_000_000}, "burst"),
        ({"burst": 5}, "burst"),
    ],
)
async def test_a_bad_job_rate_names_the_field_and_stores_nothing(
    session: Callable[..., Any], changes: dict[str, Any], field: str
) -> None:
    async with session() as rt:
        with pytest.raises(ConfigError) as err:
            await rt.add_job(JobSpec(name="r", target="rec", **changes))
        assert err.value.field == field
        assert await rt.list_jobs() == []
        await rt.add_job(JobSpec(name="ok", target="rec"))
        with pytest.raises(ConfigError) as err:
            await rt.update_job("ok", **changes)
        assert err.value.field == field
        assert (await rt.get_job("ok")).spec.rate is None


@pytest.mark.parametrize(
    ("rates", "field"),
    [
        ({"executor": {"shell": {"rate": "10/parsec"}}}, "rates.executor.shell.rate"),
        ({"pool": {"db": {"rate": "0/s"}}}, "rates.pool.db.rate"),
        ({"agent": {"main": {"rate": "1/s", "burst": 0}}}, "rates.agent.main.burst"),
        ({"queue": {"x": {"rate": "1/s"}}}, "rates"),
    ],
)
def test_a_bad_config_rate_names_the_field(rates: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env={}, database="x.db", rates=rates)
    assert err.value.field == field


class Named:
    """Records the payload's ``n`` of each run, in start order."""

    def __init__(self) -> None:
        self.order: list[Any] = []

    async def __call__(self, ctx: RunContext) -> None:
        self.order.append(ctx.payload.get("n"))


async def test_a_backlog_behind_a_rate_limit_waits_in_one_timer_not_one_each(
    db_path: str, clock: FakeClock
) -> None:
    """1,000 queued behind 10/s: one dispatch waits on the clock, the rest are parked, so
    each token costs a check of one waiter, not a re-deferral of the whole backlog; and
    a critical one enqueued behind the backlog takes the very next token."""
    named = Named()
    cfg = Config(database=db_path, shutdown_grace=0, health_interval=3600)
    async with Runtime.open(cfg, clock=clock, targets={"named": named}) as rt:
        row = await rt.add_job(JobSpec(name="api", target="named", rate="10/s", burst=1))
        await rt.enqueue_many([EnqueueRequest(job="api", payload={"n": i}) for i in range(1000)])
        await clock.wait_idle()
        assert named.order == [0]
        stats = rt.statistics()["dispatcher"]
        assert stats["parked"] == 998 and stats["delayed"] == 1  # one on the clock
        await rt.enqueue("api", {"n": "urgent"}, priority="critical")
        for _ in range(10):
            await _step_to_next_timer(clock)
        assert named.order == [0, "urgent", *range(1, 10)]  # priority, then FIFO
        bucket = rt.rates()[f"job:{row.id}"]
        assert bucket["taken"] == 11
        assert bucket["deferred"] < 1000 + 3 * 11  # each waiter held back once, not per token
        assert rt.statistics()["dispatcher"]["parked"] == 989
