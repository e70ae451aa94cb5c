"""``shepherd-backlog``: memory flat in the backlog (issue 14 item 4, issue 17 item 7).

The dispatcher holds a bounded window of the queue's head, not every queued row. Per
engine (SQLite; PostgreSQL when a server answers: ``SHEPHERD_BENCH_PG``, a scratch
database dropped at the end) and per backlog size ``q`` (1,000 and 1,000,000; with
``--quick`` 1,000 and 20,000), the backlog is committed with batched store ops
(``InsertDispatches`` of 10,000, no runtime serving the database), then a fresh worker
process (`bench.shepherd_backlog_worker`, concurrency 64, no-op ``python`` jobs) opens
the runtime on it:

- ``backlog_rss_open.<engine>`` (MiB): the worker's RSS once the dispatcher is ready
  (recovery done, the window loaded): the goal is ≤ 100 MiB at 1,000,000 queued;
- ``backlog_rss_peak.<engine>`` (MiB): its peak RSS while it runs ``DRAIN`` of them;
- ``backlog_cost.<engine>`` (µs per dispatch): first run → ``DRAIN``-th run, divided by
  ``DRAIN - 1`` — the same number of dispatches at every size, from the head of the
  queue; the median of ``REPEATS`` workers (each drains the next ``DRAIN``; the small
  backlog is committed again for each);
- ``backlog_cpu.<engine>`` (µs per dispatch): the worker's CPU time (all its threads:
  SQLite's included, the PostgreSQL server's not) over the same span, the median too:
  steadier than wall time on a shared machine;
- ``backlog_cost_ratio.<engine>`` / ``backlog_cpu_ratio.<engine>``: those at the
  largest size over those at 1,000 (goal: ≤ 1.2);
- ``backlog_cost_long.<engine>``: the same over ``LONG`` runs at the largest size
  (the steady drain deep into the backlog).

The note carries the dispatches the worker held at most (``held``) and its window.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio

from bench.context import BenchContext, ScenarioSkipped
from bench.report import Result
from bench.shepherd_bench import NOOP, result
from bench.shepherd_e2e import _BENCH_ROOT, child_env
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import new_dispatch
from shepherd.store.factory import open_store
from shepherd.store.models import EnqueueRequest, JobSpec
from shepherd.store.ops import InsertDispatches

SCENARIO = "shepherd-backlog"
SIZES = (1_000, 1_000_000)
QUICK_SIZES = (1_000, 20_000)
DRAIN = 1_000
REPEATS = 5
LONG = 50_000
CHUNK = 10_000
SERVER = os.environ.get("SHEPHERD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _create(db: str) -> None:
    async with Runtime.open(Config(database=db)) as rt:
        await rt.add_job(JobSpec(name=NOOP, target=NOOP))


async def _fill(db: str, n: int) -> float:
    """Commit ``n`` queued no-op dispatches in batches; the seconds it took."""
    began = time.monotonic()
    store = await open_store(db)
    try:
        row = await store.job(NOOP)
        assert row is not None
        now = time.time()
        new = new_dispatch(row, EnqueueRequest(job=NOOP), now, where="bench")
        for i in range(0, n, CHUNK):
            await store.apply_one(InsertDispatches([new] * min(CHUNK, n - i), "bench", now))
    finally:
        await store.close(checkpoint=True)
    return time.monotonic() - began


def _worker(db: str, drain: int, stall: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.shepherd_backlog_worker", "--db", db]
    cmd += ["--drain", str(drain), "--stall", str(stall)]
    out = subprocess.run(
        cmd, cwd=_BENCH_ROOT, env=child_env(), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"backlog worker failed: {out.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if report["count"] < drain:
        raise RuntimeError(f"the worker ran {report['count']} of {drain}")
    return report


async def _measure(
    ctx: BenchContext, engine: str, db: str, q: int, last: bool
) -> tuple[list[Result], tuple[float, float]]:
    await _create(db)
    fill = await _fill(db, q)
    reports: list[dict[str, Any]] = []
    for i in range(REPEATS):
        if i and q <= DRAIN:
            await _fill(db, q)  # drained: commit the small backlog again
        reports.append(await anyio.to_thread.run_sync(_worker, db, DRAIN, ctx.stall_timeout))
    cost = statistics.median(r["elapsed"] / (DRAIN - 1) for r in reports) * 1e6
    cpu = statistics.median(r["cpu"] / (DRAIN - 1) for r in reports) * 1e6
    first = reports[0]
    note = f"held ≤ {max(r['held'] for r in reports)} (window {first['window']}); fill {fill:.1f}s"
    peak = max(r["rss_peak"] for r in reports)
    out = [
        result(SCENARIO, f"backlog_rss_open.{engine}", first["rss_open"], "MiB", q, note=note),
        result(SCENARIO, f"backlog_rss_peak.{engine}", peak, "MiB", q),
        result(SCENARIO, f"backlog_cost.{engine}", cost, "µs/dispatch", q),
        result(SCENARIO, f"backlog_cpu.{engine}", cpu, "µs/dispatch", q),
    ]
    if last and q > LONG:
        long = await anyio.to_thread.run_sync(_worker, db, LONG, ctx.stall_timeout)
        per = long["elapsed"] / (LONG - 1) * 1e6
        out.append(result(SCENARIO, f"backlog_cost_long.{engine}", per, "µs/dispatch", q))
        per = long["cpu"] / (LONG - 1) * 1e6
        out.append(result(SCENARIO, f"backlog_cpu_long.{engine}", per, "µs/dispatch", q))
        out.append(result(SCENARIO, f"backlog_rss_long_peak.{engine}", long["rss_peak"], "MiB", q))
    return out, (cost, cpu)


async def _engine(
    ctx: BenchContext, engine: str, dbs: list[str], sizes: tuple[int, ...]
) -> list[Result]:
    out: list[Result] = []
    costs: list[tuple[float, float]] = []
    for db, q in zip(dbs, sizes, strict=True):
        got, cost = await _measure(ctx, engine, db, q, q == sizes[-1])
        for r in got:  # progress: the figures so far, should a later size fail
            print(f"{SCENARIO} {r.metric} n={q}: {r.value:.2f} {r.unit}", file=sys.stderr)
        out += got
        costs.append(cost)
    note = f"at {sizes[-1]:,} / at {sizes[0]:,} queued"
    for i, what in enumerate(("cost", "cpu")):
        ratio = costs[-1][i] / costs[0][i]
        out.append(result(SCENARIO, f"backlog_{what}_ratio.{engine}", ratio, "x", note=note))
    return out


async def run(ctx: BenchContext) -> list[Result]:
    sizes = QUICK_SIZES if ctx.quick else SIZES
    dbs = [str(ctx.path(SCENARIO, f"backlog_{q}.db")) for q in sizes]
    out = await _engine(ctx, "sqlite", dbs, sizes)
    try:
        from bench.pg_bench import scratch_database
    except ImportError as exc:  # the bench extra without asyncpg: SQLite's figures only
        print(f"{SCENARIO}: no PostgreSQL bench support: {exc}", file=sys.stderr)
        return out
    async with AsyncExitStack() as stack:
        try:
            database = await stack.enter_async_context(scratch_database())
        except ScenarioSkipped:
            return out
        base = SERVER.rpartition("/")[0]
        urls = [f"{base}/{database}?search_path=backlog_{q}" for q in sizes]
        out += await _engine(ctx, "postgresql", urls, sizes)
    return out
