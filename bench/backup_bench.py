"""``shepherd-backup``: how long a backup of a 1 GB database takes, and what it does to
dispatch throughput while it runs.

Setup (not timed): the schema, then ~1 GB of history with plain SQL (`ROWS` done
dispatches with a 900-byte payload and as many finished runs with 400 bytes of
output), so the file is the size the issue names; retention is off, so nothing is
pruned meanwhile. Then an embedded runtime (concurrency 64) runs no-op python jobs
flat out: a producer keeps ~2,000 dispatches queued (``enqueue_many`` of 500), and
completions are counted from ``OutcomeEvent``s. Phases, one runtime, one run:

- ``idle``: `BASELINE` seconds of that workload alone;
- ``inproc``: the workload while the runtime's own store takes a backup
  (``rt.store.backup``, what the scheduled ``[backup]`` actor calls: a connection and
  thread of its own, one snapshot copied 1,024 pages per step);
- ``cli``: the workload while ``shepherd backup PATH`` runs in another process (what
  an operator types; the same copy, plus the CLI's start and its bounded check);
- ``idle_after``: the workload alone again, as a control for drift.

Figures: ``backup_seconds.{inproc,cli}``, ``backup_mib_per_s.inproc``, and
``throughput.{idle,inproc,cli,idle_after}`` (dispatches finished per second), the
last three as ratios to ``throughput.idle``. The database file is in the page cache (it was just
written): a cold copy reads it from disk first. ``--quick``: ~50 MB, 2 s baseline.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result
from bench.shepherd_bench import result, runtime_log
from bench.shepherd_e2e import child_env
from shepherd.actors.messages import OutcomeEvent
from shepherd.actors.retention import RetentionConfig
from shepherd.runtime import Config, JobSpec, Runtime
from shepherd.store.models import EnqueueRequest, Seconds
from shepherd.store.sqlite import SqliteStore

SCENARIO = "shepherd-backup"
ROWS = 700_000  # ~1.05 GB
QUICK_ROWS = 35_000
BASELINE = 10.0
QUICK_BASELINE = 2.0
_CHUNK = 50_000
_QUEUED = 2_000
_BATCH = 500


def fill(db: Path, rows: int) -> None:
    """``rows`` done dispatches and ``rows`` finished runs of job 1, direct SQL."""
    old = time.time() - 86400.0
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for lo in range(1, rows + 1, _CHUNK):
            hi = min(rows, lo + _CHUNK - 1)
            conn.execute(
                "WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i < ?)"
                " INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
                " not_before, max_attempts, created_at, updated_at, outcome, payload)"
                " SELECT i, i, 1, 'old', 'enqueue', 'done', 2, ?, 3, ?, ?, 'ok',"
                " randomblob(900) FROM c",
                (lo, hi, old, old, old),
            )
            conn.execute(
                "WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i < ?)"
                " INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status,"
                " started_at, finished_at, stdout) SELECT i, i, 1, 'old', 1, 'ok', ?, ?,"
                " hex(randomblob(200)) FROM c",
                (lo, hi, old, old),
            )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def noop(_ctx: Any) -> None:
    return None


class Counter:
    def __init__(self) -> None:
        self.done = 0
        self.enqueued = 0


async def produce(rt: Runtime, counter: Counter, stop: anyio.Event) -> None:
    batch = [EnqueueRequest(job="noop") for _ in range(_BATCH)]
    while not stop.is_set():
        if counter.enqueued - counter.done < _QUEUED:
            await rt.enqueue_many(batch)
            counter.enqueued += _BATCH
        else:
            await anyio.sleep(0.002)  # bench/ may use real time


async def count(rt: Runtime, counter: Counter, task_status: Any) -> None:
    async with rt.subscribe(OutcomeEvent) as events:
        task_status.started()
        async for ev in events:
            if ev.final:
                counter.done += 1


async def window(counter: Counter, work: Any) -> tuple[float, float]:
    """(seconds ``work`` took, dispatches finished per second meanwhile)."""
    before, start = counter.done, time.perf_counter()
    await work()
    seconds = time.perf_counter() - start
    return seconds, (counter.done - before) / seconds


def cli_backup(db: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "shepherd", "--database", str(db), "backup", str(target)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"shepherd backup exited {proc.returncode}: {proc.stderr}")


async def measure(ctx: BenchContext, rows: int, baseline: float) -> list[Result]:
    db = ctx.path(SCENARIO, "big.db")
    await (await SqliteStore.open(db)).close()  # the schema
    await anyio.to_thread.run_sync(fill, db, rows)
    size = os.path.getsize(db)  # noqa: ASYNC240 - once, after the fill
    targets = [ctx.path(SCENARIO, f"copy_{k}.db") for k in ("inproc", "cli")]
    off = RetentionConfig(runs_per_job=0, dispatches_max_age=Seconds(0))
    cfg = Config(database=str(db), concurrency=64, retention=off, shutdown_grace=0)
    counter, stop = Counter(), anyio.Event()
    async with Runtime.open(cfg, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        async with anyio.create_task_group() as tg:
            await tg.start(count, rt, counter)
            tg.start_soon(produce, rt, counter, stop)
            await anyio.sleep(1.0)  # warm up
            _, idle = await window(counter, lambda: anyio.sleep(baseline))
            inproc_s, inproc = await window(counter, lambda: rt.store.backup(str(targets[0])))
            cli_s, cli = await window(
                counter, lambda: anyio.to_thread.run_sync(cli_backup, db, targets[1])
            )
            _, after = await window(counter, lambda: anyio.sleep(baseline))
            stop.set()
            tg.cancel_scope.cancel()
    for t in targets:
        with sqlite3.connect(t) as conn:
            if conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] < rows:
                raise RuntimeError(f"{t}: the copy lacks rows")
    mib = size / 2**20
    note = f"{mib:,.0f} MiB file (page cache warm); concurrency 64, no-op jobs"
    ref = f"{SCENARIO}:throughput.idle"
    return [
        result(SCENARIO, "db_mib", mib, "MiB", rows),
        result(SCENARIO, "backup_seconds.inproc", inproc_s, "s", rows, None, note),
        result(SCENARIO, "backup_mib_per_s.inproc", mib / inproc_s, "MiB/s", rows),
        result(SCENARIO, "backup_seconds.cli", cli_s, "s", rows, None, "shepherd backup"),
        result(SCENARIO, "throughput.idle", idle, "dispatches/s", rows, None, note),
        result(SCENARIO, "throughput.inproc", inproc, "dispatches/s", rows, ref, "rt.store.backup"),
        result(SCENARIO, "throughput.cli", cli, "dispatches/s", rows, ref, "shepherd backup"),
        result(SCENARIO, "throughput.idle_after", after, "dispatches/s", rows, ref, "control"),
    ]


async def run(ctx: BenchContext) -> list[Result]:
    rows, baseline = (QUICK_ROWS, QUICK_BASELINE) if ctx.quick else (ROWS, BASELINE)
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        return await measure(ctx, rows, baseline)
