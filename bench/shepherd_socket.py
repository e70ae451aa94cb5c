"""``shepherd-socket``: producers in other processes through the daemon's enqueue socket
(``runtime.producer``), beside the direct-write producer and in-process enqueue, in the
same run. Concurrency 64, no-op ``python`` jobs, each figure on a fresh database:

- ``e2e_inproc.normal``: 64 tasks in the runtime's process, ``await rt.enqueue`` one
  job at a time each (the writer group-commits them) → the n-th run. The baseline.
- ``e2e_socket.normal``: one producer process, one request per job, pipelined over one
  connection (``Producer.enqueue_many`` of 2,000 requests per call): its first request →
  the n-th run. Ratios to in-process and (``.vs_direct``) to the direct-write producer.
- ``enqueue_socket.normal``: the same producer's rate of ids back (committed).
- ``e2e_direct.normal``: ``shepherd-xproc``'s producer (one commit + one wake-up per
  job, as the CLI without the socket): its first commit → the n-th run.
- ``pickup_socket_{p50,p99,max}``: 200 jobs/s for 10 s from another process, one awaited
  ``Producer.enqueue`` each; the payload's ``time.time()`` → the run's first act.
  Goal p99 ≤ 2 ms. Beside it ``pickup_inproc_*``: the same rate from the runtime's own
  process (``rt.enqueue``), the baseline the ratios are taken to.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import anyio

from bench import shepherd_xproc
from bench.context import BenchContext
from bench.report import Result, percentiles
from bench.shepherd_bench import NOOP, open_runtime, result, runtime_log
from bench.shepherd_e2e import _BENCH_ROOT, child_env
from bench.shepherd_pickup import JOB, _target, _wait_for
from bench.shepherd_xproc import CONCURRENCY, _check_done, _Counter
from shepherd.store.models import JobSpec

SCENARIO = "shepherd-socket"
PICKUP_RATE = 200.0
PICKUP_DURATION = 10.0
QUICK_PICKUP_DURATION = 2.0


async def _producer(db: str, timeout: float, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.shepherd_socket_producer", "--db", db, *args]
    async with await anyio.open_process(
        cmd, cwd=_BENCH_ROOT, env=child_env(), stderr=subprocess.STDOUT
    ) as proc:
        assert proc.stdout is not None
        output = b""
        with anyio.fail_after(timeout):
            async for chunk in proc.stdout:
                output += chunk
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"producer failed ({proc.returncode}): {output.decode()[-2000:]}")
    report: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    if report["direct"]:
        raise RuntimeError(f"{report['direct']} requests went direct, not through the socket")
    return report


async def e2e_inproc(ctx: BenchContext, n: int) -> float:
    db = ctx.path(SCENARIO, f"inproc_{n}.db")
    counter = _Counter(n)
    async with open_runtime(db, concurrency=CONCURRENCY, targets={NOOP: counter}) as rt:
        per, extra = divmod(n, 64)

        async def produce(count: int) -> None:
            for _ in range(count):
                await rt.enqueue(NOOP)

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(64):
                tg.start_soon(produce, per + (i < extra))
        last = await counter.wait(ctx.stall_timeout)
        await _check_done(rt, n, ctx.stall_timeout)
    return n / (last - start)


async def e2e_socket(ctx: BenchContext, n: int) -> tuple[float, float, str]:
    db = ctx.path(SCENARIO, f"socket_{n}.db")
    counter = _Counter(n)
    async with open_runtime(db, concurrency=CONCURRENCY, targets={NOOP: counter}) as rt:
        reports: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:

            async def produce() -> None:
                reports.append(
                    await _producer(str(db), 60 + 0.01 * n, "--job", NOOP, "--count", str(n))
                )

            tg.start_soon(produce)
            last = await counter.wait(ctx.stall_timeout)
        await _check_done(rt, n, ctx.stall_timeout)
        stats = rt.statistics()["producers"]
    [report] = reports
    acked = n / (report["end"] - report["start"])
    note = (
        f"c={CONCURRENCY}; 1 connection, {stats['requests']:,} requests in"
        f" {stats['batches']:,} batches (enqueue_each calls); n-th run"
        f" {last - report['end']:.3f} s after the last id"
    )
    return n / (last - report["start"]), acked, note


async def pickup(ctx: BenchContext, duration: float) -> tuple[list[float], dict[str, Any]]:
    samples: list[float] = []
    clock = time.time
    db = ctx.path(SCENARIO, "pickup.db")
    jobs = (JobSpec(name=JOB, target=JOB),)
    async with open_runtime(db, targets={JOB: _target(samples, clock)}, jobs=jobs):
        warm = await _producer(str(db), 60, "--job", JOB, "--rate", "500", "--count", "100")
        await _wait_for(samples, warm["count"], ctx.stall_timeout)
        samples.clear()
        args = ["--job", JOB, "--rate", str(PICKUP_RATE), "--duration", str(duration)]
        report = await _producer(str(db), duration + 60, *args)
        await _wait_for(samples, report["count"], ctx.stall_timeout)
        if report["lag_max"] > 1.0:
            raise RuntimeError(f"the producer fell {report['lag_max']:.3f}s behind its schedule")
    return samples, report


async def pickup_inproc(ctx: BenchContext, duration: float) -> list[float]:
    """The same rate from the runtime's own process (a task per job, on schedule)."""
    samples: list[float] = []
    clock = time.time
    db = ctx.path(SCENARIO, "pickup_inproc.db")
    jobs = (JobSpec(name=JOB, target=JOB),)
    async with open_runtime(db, targets={JOB: _target(samples, clock)}, jobs=jobs) as rt:
        for _ in range(100):
            await rt.enqueue(JOB, {"t": clock()})
        await _wait_for(samples, 100, ctx.stall_timeout)
        samples.clear()

        async def enqueue_one() -> None:
            await rt.enqueue(JOB, {"t": clock()})

        count = int(PICKUP_RATE * duration)
        async with anyio.create_task_group() as tg:
            start = time.monotonic()
            for i in range(count):
                if (wait := start + i / PICKUP_RATE - time.monotonic()) > 0:
                    await anyio.sleep(wait)
                tg.start_soon(enqueue_one)
        await _wait_for(samples, count, ctx.stall_timeout)
    return samples


async def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    inproc_ref = f"{SCENARIO}:e2e_inproc.normal"
    direct_ref = f"{SCENARIO}:e2e_direct.normal"
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        for n in ctx.sizes:
            rate = await e2e_inproc(ctx, n)
            note = f"c={CONCURRENCY}; 64 tasks, one awaited rt.enqueue at a time each"
            out.append(result(SCENARIO, "e2e_inproc.normal", rate, "jobs/s", n, None, note))
            direct, note = await shepherd_xproc.e2e_xproc(ctx, n)
            out.append(result(SCENARIO, "e2e_direct.normal", direct, "jobs/s", n, None, note))
            e2e, acked, note = await e2e_socket(ctx, n)
            out.append(result(SCENARIO, "e2e_socket.normal", e2e, "jobs/s", n, inproc_ref, note))
            out.append(
                result(SCENARIO, "e2e_socket.normal.vs_direct", e2e, "jobs/s", n, direct_ref)
            )
            note = "ids back at the producer (committed), same run as e2e_socket"
            out.append(result(SCENARIO, "enqueue_socket.normal", acked, "jobs/s", n, None, note))
        duration = QUICK_PICKUP_DURATION if ctx.quick else PICKUP_DURATION
        samples, report = await pickup(ctx, duration)
        inproc = await pickup_inproc(ctx, duration)
    pct, base = percentiles(samples), percentiles(inproc)
    note = (
        f"{PICKUP_RATE:,.0f} jobs/s for {duration:g} s, one awaited Producer.enqueue each;"
        f" enqueue call p50 {report['ack_p50'] * 1e3:.2f} ms, p99 {report['ack_p99'] * 1e3:.2f}"
        " ms; goal p99 <= 2 ms"
    )
    for name in ("p50", "p99", "max"):
        metric, ref = f"pickup_socket_{name}", f"{SCENARIO}:pickup_inproc_{name}"
        value = getattr(pct, name) * 1000
        out.append(result(SCENARIO, metric, value, "ms", len(samples), ref, note))
    note = f"{PICKUP_RATE:,.0f} jobs/s for {duration:g} s from the runtime's process (baseline)"
    for name in ("p50", "p99", "max"):
        value = getattr(base, name) * 1000
        out.append(result(SCENARIO, f"pickup_inproc_{name}", value, "ms", len(inproc), None, note))
    return out
