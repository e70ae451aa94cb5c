"""``shepherd-xproc``: a producer in another process, one enqueue at a time, end to end,
next to the backlog drain rate of the same runtime, in the same run.

A daemon fed by ``shepherd enqueue`` (or any other process) receives one commit and
one wake-up datagram per job; the runtime must keep up with that as it keeps up with
a backlog. Per size ``n``, each on a fresh database, concurrency 64, no-op ``python``
jobs, completions counted inside the target (the n-th run's body, ``time.monotonic()``):

- ``drain_backlog.normal``: ``n`` dispatches committed while no runtime serves the file
  (``InsertDispatches`` of 10,000), then ``Runtime.open`` called → n-th run. The
  ceiling of the runtime's own pipeline at this queue size.
- ``enqueue_xproc_alone.normal``: `bench.shepherd_producer` ``--rate 0 --count n``
  (one ``SqliteStore``, one committed ``InsertDispatches`` + one ``send_wake`` per
  job, as the CLI does), with no runtime: the producer's own ceiling.
- ``e2e_xproc_single.normal``: the runtime open and idle, then the same producer:
  its first commit → n-th run. Ratio to ``drain_backlog.normal`` (1.0 would mean that
  wake-ups cost nothing), and (``.vs_producer``) to ``enqueue_xproc_alone.normal``.
  The note carries the wake-ups sent / dropped (full socket queue), read by the ingest
  actor, the Pokes it sent and the dispatcher's reloads: the merging at work.

Every figure is checked: the store holds ``n`` done dispatches, none failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result
from bench.shepherd_bench import NOOP, noop, open_runtime, result, runtime_log
from bench.shepherd_e2e import _BENCH_ROOT, child_env
from shepherd.actors.executors.base import RunContext
from shepherd.runtime.app import Runtime
from shepherd.runtime.jobs import new_dispatch
from shepherd.store.models import EnqueueRequest
from shepherd.store.ops import InsertDispatches
from shepherd.store.sqlite import SqliteStore

SCENARIO = "shepherd-xproc"
CONCURRENCY = 64
_CHUNK = 10_000


class _Counter:
    """A no-op target that notes when its n-th run happened."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.last = 0.0
        self.done = anyio.Event()

    async def __call__(self, _ctx: RunContext) -> None:
        self.count += 1
        if self.count == self.n:
            self.last = time.monotonic()
            self.done.set()

    async def wait(self, stall: float) -> float:
        """Until the n-th run; fails after ``stall`` seconds without a run."""
        seen = -1
        while not self.done.is_set():
            if self.count == seen:
                raise TimeoutError(f"no run for {stall:g}s ({self.count}/{self.n})")
            seen = self.count
            with anyio.move_on_after(stall):
                await self.done.wait()
        return self.last


async def _check_done(rt: Runtime, n: int, stall: float) -> None:
    """Every dispatch committed done (the last finishes shortly after its run)."""
    with anyio.fail_after(stall):
        while (stats := await rt.stats())["dispatches"]["done"] < n:
            await anyio.sleep(0.05)
    if stats["dispatches"]["done"] != n or stats["dispatches"]["dead"]:
        raise RuntimeError(f"{n} dispatches: {stats['dispatches']}")


async def _create(db: Path) -> None:
    async with open_runtime(db, targets={NOOP: noop}):
        pass


async def _fill(db: Path, n: int) -> None:
    store = await SqliteStore.open(db, create=False)
    try:
        row = await store.job(NOOP)
        assert row is not None
        now = time.time()
        for i in range(0, n, _CHUNK):
            new = new_dispatch(row, EnqueueRequest(job=NOOP), now, where="bench")
            batch = [new] * min(_CHUNK, n - i)
            await store.apply_one(InsertDispatches(batch, "bench-setup", now))
    finally:
        await store.close()


async def drain_backlog(ctx: BenchContext, n: int) -> float:
    db = ctx.path(SCENARIO, f"drain_{n}.db")
    await _create(db)
    await _fill(db, n)
    counter = _Counter(n)
    start = time.monotonic()
    async with open_runtime(db, concurrency=CONCURRENCY, targets={NOOP: counter}) as rt:
        last = await counter.wait(ctx.stall_timeout)
        await _check_done(rt, n, ctx.stall_timeout)
    return n / (last - start)


async def _producer(db: Path, n: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.shepherd_producer", "--db", str(db), "--job", NOOP]
    cmd += ["--rate", "0", "--count", str(n)]
    # cwd: this harness's bench package, whatever PYTHONPATH says about the code under test
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
    if report["count"] != n:
        raise RuntimeError(f"the producer committed {report['count']} of {n}")
    return report


async def producer_alone(ctx: BenchContext, n: int) -> tuple[float, str]:
    db = ctx.path(SCENARIO, f"alone_{n}.db")
    await _create(db)
    report = await _producer(db, n, 60 + 0.01 * n)
    note = (
        "1 process, 1 commit + 1 wake-up per job, no runtime; commit"
        f" p50 {report['commit_p50'] * 1e3:.2f} ms, p99 {report['commit_p99'] * 1e3:.2f} ms"
    )
    return n / (report["end"] - report["start"]), note


async def e2e_xproc(ctx: BenchContext, n: int) -> tuple[float, str]:
    db = ctx.path(SCENARIO, f"e2e_{n}.db")
    await _create(db)
    counter = _Counter(n)
    async with open_runtime(db, concurrency=CONCURRENCY, targets={NOOP: counter}) as rt:
        async with anyio.create_task_group() as tg:
            reports: list[dict[str, Any]] = []

            async def produce() -> None:
                reports.append(await _producer(db, n, 60 + 0.02 * n))

            tg.start_soon(produce)
            last = await counter.wait(ctx.stall_timeout)
        await _check_done(rt, n, ctx.stall_timeout)
        stats = rt.statistics()
    [report] = reports
    ingest, dispatcher = stats["ingest"], stats["dispatcher"]
    note = (
        f"c={CONCURRENCY}; producer commit p50 {report['commit_p50'] * 1e3:.2f} ms,"
        f" p99 {report['commit_p99'] * 1e3:.2f} ms; n-th run {last - report['end']:.3f} s"
        f" after the last commit; wake-ups sent {n - report['wakes_dropped']:,}"
        f" (dropped {report['wakes_dropped']:,}), read {ingest['wakes']:,},"
        f" Pokes {ingest.get('pokes', '?')}, reloads {dispatcher.get('reloads', '?')},"
        f" dispatcher loops {dispatcher['loops']:,}"
    )
    return n / (last - report["start"]), note


async def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    drain_ref = f"{SCENARIO}:drain_backlog.normal"
    alone_ref = f"{SCENARIO}:enqueue_xproc_alone.normal"
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        for n in ctx.sizes:
            drain = await drain_backlog(ctx, n)
            note = f"c={CONCURRENCY}; Runtime.open -> n-th run, queue committed beforehand"
            out.append(result(SCENARIO, "drain_backlog.normal", drain, "jobs/s", n, None, note))
            alone, note = await producer_alone(ctx, n)
            out.append(
                result(SCENARIO, "enqueue_xproc_alone.normal", alone, "jobs/s", n, None, note)
            )
            rate, note = await e2e_xproc(ctx, n)
            metric = "e2e_xproc_single.normal"
            out.append(result(SCENARIO, metric, rate, "jobs/s", n, drain_ref, note))
            out.append(result(SCENARIO, f"{metric}.vs_producer", rate, "jobs/s", n, alone_ref))
    return out
