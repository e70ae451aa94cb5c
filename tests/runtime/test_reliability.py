"""Delivery guarantees on restart, idempotency keys, heartbeats, idle timeouts, breakers."""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio
import asyncpg
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import (
    Config,
    JobSpec,
    RetryPolicy,
    RunContext,
    Runtime,
)
from shepherd.store.errors import Deferred
from shepherd.store.factory import is_postgres, open_store
from shepherd.store.ops import ClaimRun, ClaimRuns, InsertDispatches, NewDispatch
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

SEEN: list[tuple[str, int, str | None]] = []


async def record(ctx: RunContext) -> str:
    SEEN.append((ctx.job.name, ctx.attempt, ctx.idempotency_key))
    return "ok"


async def _claim_without_running(db_path: str, job_id: int, job: str) -> int:
    """Leave a dispatch claimed with a ``running`` run, as a killed process would."""
    store = await open_store(db_path)
    try:
        [(dispatch_id, _)] = await store.apply_one(
            InsertDispatches(
                [
                    NewDispatch(
                        job_id=job_id,
                        job_name=job,
                        kind="enqueue",
                        priority=2,
                        not_before=0,
                        max_attempts=1,
                    )
                ],
                "dead-process",
                1.0,
            )
        )
        [run_id] = await store.apply_one(
            ClaimRuns(
                [
                    ClaimRun(
                        dispatch_id=dispatch_id,
                        attempt=1,
                        job_id=job_id,
                        idempotency_key=f"key-{job}",
                    )
                ],
                "dead-process",
                2.0,
            )
        )
        assert run_id
    finally:
        await store.close()
    return int(dispatch_id)


async def test_restart_replays_at_least_once_and_not_at_most_once(db_path: str) -> None:
    SEEN.clear()
    async with Runtime.open(Config(database=db_path), targets={"record": record}) as rt:
        a = await rt.add_job(
            JobSpec(name="alo", target="record", delivery_guarantee="at-least-once")
        )
        b = await rt.add_job(JobSpec(name="amo", target="record"))
    alo = await _claim_without_running(db_path, a.id, "alo")
    amo = await _claim_without_running(db_path, b.id, "amo")
    async with Runtime.open(Config(database=db_path), targets={"record": record}) as rt:
        replayed = await rt.wait(alo, timeout=10)
        assert (replayed.status, replayed.attempt) == ("done", 2)  # one replay, counted
        assert replayed.idempotency_key == "key-alo:replay2"  # fresh key, same lineage
        dead = await rt.dispatch(amo)
        assert (dead.status, dead.dead_reason, dead.outcome) == ("dead", "crashed", "crashed")
        runs = {r.dispatch_id: r for r in await rt.runs(status="crashed")}
        assert set(runs) == {alo, amo} and runs[amo].reason == "orphaned"
        assert await rt.runs(status="running") == []
        stats = rt.statistics()["dispatcher"]
        # PostgreSQL too: the runs of no live node are the start recovery's (the node's
        # first rescue pass comes a third of a lease after it joined)
        assert stats["recovered"] == 2
        assert stats["recovery_seconds"] >= 0
    assert SEEN == [("alo", 2, "key-alo:replay2")]  # the at-most-once job never ran again


async def test_retries_share_the_lineage_key_and_reclaim_it(db_path: str) -> None:
    keys: list[str | None] = []

    async def flaky(ctx: RunContext) -> None:
        keys.append(ctx.idempotency_key)
        if ctx.attempt < 3:
            raise RuntimeError("again")

    async with Runtime.open(Config(database=db_path), targets={"flaky": flaky}) as rt:
        await rt.add_job(
            JobSpec(
                name="flaky",
                target="flaky",
                retry=RetryPolicy(max_attempts=3, base=0.01, max_delay=0.01),
            )
        )
        final = await rt.wait(await rt.enqueue("flaky"), timeout=10)
        assert final.status == "done"
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0]
    ledger = dict(await _rows(db_path, "SELECT key, status FROM idempotency"))
    assert ledger[keys[0]] == "claimed"  # kept after success


async def test_a_key_claimed_by_another_run_is_not_run_again(db_path: str) -> None:
    gate = anyio.Event()
    ran: list[int] = []

    async def hold(ctx: RunContext) -> None:
        ran.append(ctx.dispatch_id)
        await gate.wait()

    async with Runtime.open(Config(database=db_path), targets={"hold": hold}) as rt:
        await rt.add_job(JobSpec(name="a", target="hold"))
        await rt.add_job(JobSpec(name="b", target="hold"))
        first = await rt.enqueue("a", idempotency_key="invoice-42")
        assert await rt.enqueue("a", idempotency_key="invoice-42") == first  # deduplicated
        await eventually(lambda: ran == [first])
        other = await rt.enqueue("b", idempotency_key="invoice-42")  # other job, same key
        skipped = await rt.wait(other, timeout=10)
        assert (skipped.status, skipped.outcome) == ("done", "skipped")
        (run,) = await rt.runs(dispatch_id=other)
        assert (run.status, run.reason) == ("skipped", "idempotency-skip")
        gate.set()
        assert (await rt.wait(first, timeout=10)).status == "done"
    assert ran == [first]


async def test_heartbeats_are_written_in_batches(db_path: str) -> None:
    clock = FakeClock()
    poke, beat, release = anyio.Event(), anyio.Event(), anyio.Event()

    async def beating(ctx: RunContext) -> None:
        await poke.wait()
        ctx.heartbeat()
        beat.set()
        await release.wait()

    cfg = Config(database=db_path, shutdown_grace=0, health_interval=2)
    async with Runtime.open(cfg, clock=clock, targets={"beating": beating}) as rt:
        await rt.add_job(JobSpec(name="beating", target="beating"))
        dispatch_id = await rt.enqueue("beating")
        await eventually(lambda: _status(rt, dispatch_id, "running"))
        (run,) = await rt.runs(dispatch_id=dispatch_id)
        started = run.started_at
        await clock.advance_when_blocked(1)  # the health monitor has armed its tick first
        poke.set()
        await beat.wait()  # a heartbeat at started + 1 s, not yet written
        await clock.wait_idle()
        assert not await _heartbeat_after(rt, dispatch_id, started)
        await clock.advance_when_blocked(1)  # one health tick: the batched heartbeat
        assert await _heartbeat_after(rt, dispatch_id, started)
        release.set()
        await rt.wait(dispatch_id, timeout=10)


async def _heartbeat_after(rt: Runtime, dispatch_id: int, t: float) -> bool:
    (run,) = await rt.runs(dispatch_id=dispatch_id)
    return (run.heartbeat_at or 0) > t


async def test_idle_timeout_is_pushed_back_by_heartbeats(db_path: str) -> None:
    clock = FakeClock()
    poke = anyio.Event()
    beats: list[float] = []

    async def slow(ctx: RunContext) -> None:
        nonlocal poke
        while True:
            await poke.wait()
            poke = anyio.Event()
            ctx.heartbeat()
            beats.append(clock.now())

    cfg = Config(database=db_path, shutdown_grace=0, health_interval=1000)
    async with Runtime.open(cfg, clock=clock, targets={"slow": slow}) as rt:
        await rt.add_job(
            JobSpec(
                name="slow",
                target="slow",
                idle_timeout=5,
                timeout=100,
                retry=RetryPolicy(max_attempts=1),
            )
        )
        dispatch_id = await rt.enqueue("slow")
        await eventually(lambda: _status(rt, dispatch_id, "running"))
        for _ in range(3):  # activity every 4 s keeps a 5 s idle timeout from firing
            await clock.advance_when_blocked(4)
            poke.set()
            await clock.wait_idle()
            assert beats[-1] == clock.now()
        assert (await rt.dispatch(dispatch_id)).status == "running"
        await clock.advance_when_blocked(5)
        final = await rt.wait(dispatch_id, timeout=10)
        (run,) = await rt.runs(dispatch_id=dispatch_id)
        assert (run.status, run.reason) == ("timeout", "idle")
        assert "idle timeout" in (run.error or "") and final.status == "dead"


async def _status(rt: Runtime, dispatch_id: int, status: str) -> bool:
    return (await rt.dispatch(dispatch_id)).status == status


async def test_breaker_opens_defers_without_spending_attempts_and_recovers(
    db_path: str,
) -> None:
    clock = FakeClock()
    gateway_up = False
    calls: list[int] = []

    async def turn(ctx: RunContext) -> str:
        calls.append(ctx.attempt)
        if not gateway_up:
            raise Deferred(5, "gateway unavailable")
        return "answered"

    cfg = Config(
        database=db_path,
        shutdown_grace=0,
        health_interval=1000,
        breaker_fail_max=3,
        breaker_reset=30,
    )
    async with Runtime.open(cfg, clock=clock, targets={"turn": turn}) as rt:
        await rt.add_job(JobSpec(name="turn", target="turn", retry=RetryPolicy(max_attempts=2)))
        dispatch_id = await rt.enqueue("turn")
        for n in range(1, 4):  # three deferrals open the breaker (fail_max=3)
            await eventually(lambda n=n: len(calls) == n)
            await eventually(lambda: _status(rt, dispatch_id, "queued"))
            d = await rt.dispatch(dispatch_id)
            assert d.attempt == 0  # a deferral never spends an attempt
            await clock.advance_when_blocked(5)
        breakers = rt.statistics()["dispatcher"]["breakers"]
        assert breakers["python"]["state"] == "open"
        await clock.advance_when_blocked(10)
        assert len(calls) == 3  # still open: nothing tried
        gateway_up = True
        await clock.advance_when_blocked(20)  # reset passed: one half-open trial succeeds
        final = await rt.wait(dispatch_id, timeout=10)
        assert (final.status, final.attempt, final.result) == ("done", 1, "answered")
        assert rt.statistics()["dispatcher"]["breakers"]["python"]["state"] == "closed"


async def test_status_snapshot_is_written_for_other_processes(db_path: str) -> None:
    clock = FakeClock()
    cfg = Config(database=db_path, shutdown_grace=0, health_interval=1)
    async with Runtime.open(cfg, clock=clock) as rt:
        await clock.advance_when_blocked(1)  # one health tick, its snapshot committed
        [snap] = await _rows(db_path, "SELECT instance, status FROM instances")
        assert rt.instance in snap[0] and b"dispatcher" in snap[1]
    [(stopped,)] = await _rows(db_path, "SELECT stopped_at FROM instances")
    assert stopped is not None


async def _rows(db_path: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (no parameters) on the test's database, on either engine: the
    tables other processes read, seen from outside the runtime."""
    if is_postgres(db_path):
        conn = await asyncpg.connect(db_path)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


async def test_expired_idempotency_keys_are_pruned(db_path: str) -> None:
    clock = FakeClock()
    cfg = Config(database=db_path, shutdown_grace=0, health_interval=1)
    async with Runtime.open(cfg, clock=clock, targets={"record": record}) as rt:
        await rt.add_job(JobSpec(name="rec", target="record"))
        await rt.wait(await rt.enqueue("rec"), timeout=10)
        assert await _keys(db_path) == 1  # kept after success
        await clock.advance_when_blocked(1)  # first tick prunes nothing: the key is fresh
        assert rt.statistics()["health"]["ticks"] == 1
        assert await _keys(db_path) == 1
        await clock.advance_when_blocked(7 * 86400 + 3600)  # past the expiry and the prune

        # the pass is due now; the pruner's WAL checkpoint before it is not store work the
        # clock counts (a connection of its own), so wait for the pass, time stands still
        async def gone() -> bool:
            return await _keys(db_path) == 0

        await eventually(gone, what="the expired key to go")


async def _keys(db_path: str) -> int:
    [(count,)] = await _rows(db_path, "SELECT COUNT(*) FROM idempotency")
    return int(count)
