"""``shepherd-prune``: the store writer's commit latency while the pruner deletes 1M rows.

The database is filled with plain SQL (no runtime): `ROWS` rows to prune, half finished
runs over `JOBS` jobs (plus the newest `KEEP` of each job, which stay) and half
``done`` dispatches that ended 30 days ago. A store writer and the pruner run as in the
runtime (``RealClock``, PASSIVE checkpoints every 2 s), with a steady workload: `RATE`
``InsertDispatches`` ops per second, one task per op started on schedule (a slow
commit does not delay the next), each timed from its scheduled start to its committed
reply. Three phases, one database, one run:

- ``idle``: the workload alone for `BASELINE` seconds;
- ``prune``: the workload while the pruner runs one pass (``PruneNow``) in its bounded
  batches (``batch_size`` 1,000, a pause as long as each batch after it);
- ``unbatched``: the database is filled again, then the same rules are sent as one op
  each with no limit: what a prune without batches would do to the writer.

Figures: ``commit_{p50,p99,max}.<phase>`` (ms) with ``prune`` and ``unbatched`` as
ratios to ``idle``; ``prune_rows_per_s`` (ratio to the unbatched rate) and
``prune_seconds``. ``--quick``: 20,000 rows, 2 s baseline.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from bench.context import BenchContext
from bench.report import Result, percentiles
from bench.shepherd_bench import result, runtime_log
from shepherd.actors.primitives.clock import RealClock
from shepherd.actors.primitives.mailbox import Address, Mailbox, Reply
from shepherd.actors.pruner import PruneNow, Pruner, PrunerMsg, Stop
from shepherd.actors.retention import RetentionConfig
from shepherd.actors.writer import StoreMsg, StoreWriter, write
from shepherd.store.models import Seconds
from shepherd.store.ops import InsertDispatches, NewDispatch, PruneDispatches, PruneRunsPerJob
from shepherd.store.sqlite import SqliteStore

SCENARIO = "shepherd-prune"
ROWS = 1_000_000
QUICK_ROWS = 20_000
JOBS = 10
KEEP = 100
RATE = 500.0
BASELINE = 10.0
QUICK_BASELINE = 2.0
DAY = 86400.0
_CHUNK = 50_000


def fill(db: Path, rows: int) -> None:
    """``rows // 2`` prunable runs (+ ``JOBS * KEEP`` kept), the rest prunable done
    dispatches, above the ids already there; direct SQL, one transaction."""
    old = time.time() - 30 * DAY
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("BEGIN IMMEDIATE")
        run0 = conn.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0] + 1
        d0 = conn.execute("SELECT COALESCE(MAX(id), 0), COALESCE(MAX(seq), 0) FROM dispatches")
        dispatch0, seq0 = (v + 1 for v in d0.fetchone())
        runs = rows // 2 + JOBS * KEEP
        for lo in range(0, runs, _CHUNK):
            conn.executemany(
                "INSERT INTO runs (id, job_id, job_name, attempt, status, started_at,"
                " finished_at) VALUES (?, ?, 'bench', 1, 'ok', ?, ?)",
                [(run0 + i, i % JOBS + 1, old, old) for i in range(lo, min(runs, lo + _CHUNK))],
            )
        dispatches = rows - rows // 2
        for lo in range(0, dispatches, _CHUNK):
            conn.executemany(
                "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
                " not_before, max_attempts, created_at, updated_at, outcome)"
                " VALUES (?, ?, 1, 'bench', 'enqueue', 'done', 2, ?, 3, ?, ?, 'ok')",
                [
                    (dispatch0 + i, seq0 + i, old, old, old)
                    for i in range(lo, min(dispatches, lo + _CHUNK))
                ],
            )
        conn.execute("COMMIT")


async def workload(writer: Address[StoreMsg], samples: list[float], done: anyio.Event) -> None:
    """`RATE` single-row enqueues per second until ``done``; latency from the schedule."""

    async def one(due: float) -> None:
        row = NewDispatch(
            job_id=1, job_name="bench", kind="enqueue", priority=2, not_before=0, max_attempts=1
        )
        await write(writer, InsertDispatches([row], "bench", time.time()))
        samples.append(time.perf_counter() - due)

    async with anyio.create_task_group() as tg:
        start, i = time.perf_counter(), 0
        while not done.is_set():
            due = start + i / RATE
            if (wait := due - time.perf_counter()) > 0:
                with anyio.move_on_after(wait):
                    await done.wait()
                continue
            tg.start_soon(one, due)
            i += 1


async def phase(
    writer: Address[StoreMsg], work: Callable[[], Awaitable[object]]
) -> tuple[list[float], float, object]:
    """Run the workload around ``work()``; (latencies, seconds of work, its result)."""
    samples: list[float] = []
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(workload, writer, samples, done)
        start = time.perf_counter()
        got = await work()
        seconds = time.perf_counter() - start
        done.set()
    return samples, seconds, got


async def measure(db: Path, rows: int, baseline: float) -> list[Result]:
    await (await SqliteStore.open(db)).close()  # the schema
    fill(db, rows)
    store = await SqliteStore.open(db)
    writer_mb: Mailbox[StoreMsg] = Mailbox("store", 100_000)
    pruner_mb: Mailbox[PrunerMsg] = Mailbox("pruner", 16)
    writer, inbox = writer_mb.address(), pruner_mb.address()
    cfg = RetentionConfig(interval=Seconds(30 * DAY), runs_per_job=KEEP)
    pruner = Pruner(cfg, writer=writer, mailbox=pruner_mb, clock=RealClock(), store=store)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(StoreWriter(store, writer_mb).run)
            await tg.start(pruner.run)
            idle, _, _ = await phase(writer, lambda: anyio.sleep(baseline))

            async def prune_now() -> dict[str, int]:
                reply: Reply[dict[str, int]] = Reply()
                inbox.tell(PruneNow(reply))
                return await reply.wait()

            batched, seconds, counts = await phase(writer, prune_now)
            assert isinstance(counts, dict)
            pruned = counts["runs"] + counts["dispatches"]
            await anyio.to_thread.run_sync(fill, db, rows)

            async def unbatched() -> int:
                now, huge = time.time(), 10**9
                runs = await write(writer, PruneRunsPerJob(keep=KEEP, limit=huge, max_jobs=huge))
                cut = now - cfg.dispatches_max_age
                d = PruneDispatches(status="done", before=cut, keyed_before=cut, limit=huge)
                return int(runs.deleted + (await write(writer, d)).deleted)

            naive, naive_seconds, naive_rows = await phase(writer, unbatched)
            inbox.tell(Stop())
            tg.cancel_scope.cancel()
    finally:
        await store.close()
    if pruned < rows * 0.99:
        raise RuntimeError(f"the pruner deleted {pruned:,} of {rows:,} rows ({counts})")
    note = f"{RATE:,.0f} single-row enqueues/s; prune of {pruned:,} rows"
    out: list[Result] = []
    for name, samples in (("idle", idle), ("prune", batched), ("unbatched", naive)):
        pct = percentiles(samples)
        for stat, value in (("p50", pct.p50), ("p99", pct.p99), ("max", pct.max)):
            ref = None if name == "idle" else f"{SCENARIO}:commit_{stat}.idle"
            out.append(
                result(SCENARIO, f"commit_{stat}.{name}", value * 1000, "ms", rows, ref, note)
            )
    rate = pruned / seconds
    assert isinstance(naive_rows, int)
    naive_rate = naive_rows / naive_seconds
    out.append(result(SCENARIO, "prune_unbatched_rows_per_s", naive_rate, "rows/s", rows))
    out.append(
        result(
            SCENARIO,
            "prune_rows_per_s",
            rate,
            "rows/s",
            rows,
            f"{SCENARIO}:prune_unbatched_rows_per_s",
            f"batch_size {cfg.batch_size}; {seconds:.1f} s for the pass",
        )
    )
    out.append(result(SCENARIO, "prune_seconds", seconds, "s", rows, None, note))
    return out


async def run(ctx: BenchContext) -> list[Result]:
    rows, baseline = (QUICK_ROWS, QUICK_BASELINE) if ctx.quick else (ROWS, BASELINE)
    db = ctx.path(SCENARIO, "prune.db")
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        return await measure(db, rows, baseline)
