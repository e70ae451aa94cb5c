"""``shepherd-enqueue``: how fast the embedded runtime accepts no-op jobs.

Once per size ``n``, each variant on a fresh database and runtime (concurrency 64):

- ``enqueue_single.normal``: one producer, ``await rt.enqueue("noop")`` n times.
- ``enqueue_concurrent.normal``: `PRODUCERS` tasks, each awaiting ``enqueue`` n/16 times
  (the store writer's group commit can put several producers in one transaction).
- ``enqueue_batch.normal``: ``await rt.enqueue_many([...])`` of `BATCH` requests.

Every call returns only once its dispatch is committed. The jobs are due an hour
ahead, so the dispatcher holds them and none runs during the measurement (huey's
``enqueue`` is likewise measured without a consumer). Each figure is reported twice:
against ``huey:enqueue.normal``, and (``.vs_floor``) against the floor it can at best
reach: one commit per row for single and concurrent producers, 1,000-row transactions
for the batch.
"""

from __future__ import annotations

import sqlite3
import time

import anyio

from bench.context import BenchContext
from bench.report import Result
from bench.shepherd_bench import NOOP, open_runtime, result, runtime_log
from shepherd.runtime.app import Runtime
from shepherd.store.models import EnqueueRequest

SCENARIO = "shepherd-enqueue"
PRODUCERS = 16
BATCH = 1_000
AHEAD = 3600.0  # seconds: due later than the measurement lasts, so nothing runs


async def _single(rt: Runtime, n: int) -> None:
    for _ in range(n):
        await rt.enqueue(NOOP, delay=AHEAD)


async def _concurrent(rt: Runtime, n: int) -> None:
    async def producer(count: int) -> None:
        for _ in range(count):
            await rt.enqueue(NOOP, delay=AHEAD)

    async with anyio.create_task_group() as tg:
        for i in range(PRODUCERS):
            tg.start_soon(producer, n // PRODUCERS + (1 if i < n % PRODUCERS else 0))


async def _batch(rt: Runtime, n: int) -> None:
    due = time.time() + AHEAD
    for i in range(0, n, BATCH):
        await rt.enqueue_many(
            [EnqueueRequest(job=NOOP, not_before=due) for _ in range(min(BATCH, n - i))]
        )


def _count_queued(conn: sqlite3.Connection) -> int:
    sql = "SELECT count(*) FROM dispatches WHERE status = 'queued'"
    return int(conn.execute(sql).fetchone()[0])


async def measure(ctx: BenchContext, variant: str, n: int) -> float:
    """Jobs/s of ``variant`` (single | concurrent | batch) for ``n`` jobs."""
    fn = {"single": _single, "concurrent": _concurrent, "batch": _batch}[variant]
    db = ctx.path(SCENARIO, f"{variant}_{n}.db")
    async with open_runtime(db) as rt:
        start = time.perf_counter()
        await fn(rt, n)
        elapsed = time.perf_counter() - start
        if (queued := await rt.store.read(_count_queued)) != n:
            raise RuntimeError(f"{queued} dispatches queued, expected {n}")
        if rt.statistics()["dispatcher"]["admitted"]:
            raise RuntimeError("a job ran during the enqueue measurement")
    return n / elapsed


async def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    variants = (
        ("single", "commit_1row", "1 producer awaiting each enqueue"),
        ("concurrent", "commit_1row", f"{PRODUCERS} producers awaiting each enqueue"),
        ("batch", f"commit_{BATCH}rows", f"enqueue_many of {BATCH:,}"),
    )
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        for n in ctx.sizes:
            for variant, floor_metric, note in variants:
                rate = await measure(ctx, variant, n)
                metric = f"enqueue_{variant}.normal"
                out.append(result(SCENARIO, metric, rate, "jobs/s", n, "huey:enqueue.normal", note))
                out.append(
                    result(
                        SCENARIO,
                        f"{metric}.vs_floor",
                        rate,
                        "jobs/s",
                        n,
                        f"floor:{floor_metric}.normal",
                        note,
                    )
                )
    return out
