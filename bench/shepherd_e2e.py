"""``shepherd-e2e``: no-op jobs from first enqueue to last completion, and worker RSS.

Each run is a fresh process (`bench.shepherd_worker`) holding one embedded runtime
and its producer; completions are counted from ``OutcomeEvent``s, the database is not
polled. Per size ``n``:

- ``e2e.normal``: concurrency 64, the producer calls ``enqueue_many`` with 1,000 jobs
  at a time, flat out.
- ``e2e_c256.normal``: the same at concurrency 256.
- ``e2e_single_producer.normal`` (smallest size only: it is slow): concurrency 64, one
  producer awaiting ``enqueue`` per job, as huey's producer does.
- ``worker_cpu_per_job.normal``: that process's CPU (all its threads, ``process_time``)
  from the first enqueue to the n-th completion, per job, against huey's consumer's
  over its e2e (``huey:worker_cpu_per_job.normal``, psutil from outside).
- ``worker_rss_peak.normal``: that process's peak RSS during the concurrency-64 run
  (psutil every 100 ms from outside, as for huey); ``worker_rss_after.normal``: its
  RSS after the n-th completion, measured inside. The producer lives in the same
  process (that is what embedding means); huey's lives outside its consumer.

Rates are against ``huey:e2e.normal`` (huey's consumer, one producer) and, as
``.vs_floor``, against ``floor:commit_1row.normal`` (the same reference as huey's own
e2e ratio); RSS against ``huey:worker_rss_peak.normal``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil

from bench.context import BenchContext
from bench.report import Result, rss_mib
from bench.shepherd_bench import result
from shepherd import store

SCENARIO = "shepherd-e2e"
_RSS_EVERY = 0.1
# The code under test (wherever ``store`` and its siblings were imported from) and the
# harness: a child process imports both from the same places as this one.
_CODE_ROOT = Path(store.__file__).resolve().parents[1]
_BENCH_ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """Environment for a child process that must import the same shepherd code."""
    roots = dict.fromkeys([str(_CODE_ROOT), str(_BENCH_ROOT)])
    path = os.pathsep.join(filter(None, [*roots, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


def run_worker(
    ctx: BenchContext, n: int, concurrency: int, producer: str
) -> tuple[dict[str, Any], float]:
    """Run one e2e in a fresh process: (its JSON report, its peak RSS in MiB)."""
    db = ctx.path(SCENARIO, f"e2e_{producer}_c{concurrency}_{n}.db")
    cmd = [sys.executable, "-m", "bench.shepherd_worker", "--db", str(db), "--n", str(n)]
    cmd += ["--concurrency", str(concurrency), "--producer", producer]
    cmd += ["--stall", str(ctx.stall_timeout)]
    proc = subprocess.Popen(
        cmd, cwd=_CODE_ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, rss_mib(proc.pid))
            except psutil.Error:
                return
            stop.wait(_RSS_EVERY)

    sampler = threading.Thread(target=sample, name="rss", daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=60 + 0.01 * n)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise TimeoutError(f"shepherd e2e worker (n={n}) overran: {err.decode()[-2000:]}") from None
    finally:
        stop.set()
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(
            f"shepherd e2e worker failed ({proc.returncode}): {err.decode()[-2000:]}"
        )
    return json.loads(out.decode().strip().splitlines()[-1]), peak


def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    huey, floor = "huey:e2e.normal", "floor:commit_1row.normal"
    for n in ctx.sizes:
        report, peak = run_worker(ctx, n, 64, "batch")
        note = "c=64, enqueue_many(1,000)"
        out.append(result(SCENARIO, "e2e.normal", report["rate"], "jobs/s", n, huey, note))
        out.append(
            result(SCENARIO, "e2e.normal.vs_floor", report["rate"], "jobs/s", n, floor, note)
        )
        rss_ref = "huey:worker_rss_peak.normal"
        out.append(result(SCENARIO, "worker_rss_peak.normal", peak, "MiB", n, rss_ref, "c=64"))
        after = report["rss_after"]
        out.append(result(SCENARIO, "worker_rss_after.normal", after, "MiB", n, rss_ref, "c=64"))
        cpu, cpu_ref = report["cpu_per_job"], "huey:worker_cpu_per_job.normal"
        note = "c=64: the process's CPU (all threads, its producer too) over e2e, per job"
        out.append(result(SCENARIO, "worker_cpu_per_job.normal", cpu, "µs", n, cpu_ref, note))
        report, _ = run_worker(ctx, n, 256, "batch")
        note = "c=256, enqueue_many(1,000)"
        out.append(result(SCENARIO, "e2e_c256.normal", report["rate"], "jobs/s", n, huey, note))
        if n == min(ctx.sizes):
            report, _ = run_worker(ctx, n, 64, "single")
            note = "c=64, 1 producer awaiting each enqueue"
            metric = "e2e_single_producer.normal"
            out.append(result(SCENARIO, metric, report["rate"], "jobs/s", n, huey, note))
    return out
