"""``shepherd-scheduler``: N cron jobs firing every minute plus N/10 one-shot jobs,
through the real scheduler, dispatcher and store, on the real clock (issue 3).

For each N in `SIZES` (N jobs ``* * * * *`` plus N/10 ``at`` jobs at random instants
spread over the window), the database is written first (the ``SaveJob`` ops
``add_job`` would write), then an embedded runtime is opened `LEAD` seconds before a
minute boundary and runs for `MINUTES` boundaries of real time. Every job is a no-op
``python`` target; the real dispatcher runs them all (concurrency 64). Per N:

- ``sched_lateness_{p50,p99,max}`` (ms): commit time of each schedule dispatch minus
  its slot, for every slot (the scheduler's ``observe`` hook is called as each commit
  returns, with ``time.time()``); ``sched_at_lateness_p99`` for the one-shots alone.
- ``sched_fire_pass`` (ms): slot → last dispatch of that minute committed (mean over
  the boundaries); ``sched_commit_per_slot`` (µs) is that divided by N.
- ``sched_cpu_per_slot`` (µs): CPU of the whole process (scheduler, store writer,
  dispatcher and the no-op runs, all threads) over the window, less the idle CPU rate
  measured before it (``sched_cpu_idle``, ms of CPU per s), per slot fired. Flat from
  100 to 10,000 jobs is the goal; ``sched_cpu_flatness`` = 10k / 100.
  ``sched_cpu_gross_per_slot`` keeps the idle share.
- ``sched_rss_jobs`` (MiB): RSS growth from opening the runtime on these jobs (the
  scheduler's heap and job table, and the dispatcher's job table); ``sched_rss_peak``.

Goal (issue 3): p99 lateness under 5 ms, cost per slot flat from 100 to 10,000 jobs.
``--quick``: N = 100 and 1,000, one boundary each. Standalone:
``python -m bench.scheduler_bench [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result, percentiles, rss_mib
from bench.shepherd_bench import NOOP, noop, result, runtime_log
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import save_op
from shepherd.store.models import JobSpec
from shepherd.store.sqlite import SqliteStore

SCENARIO = "shepherd-scheduler"
SIZES: dict[int, int] = {100: 2, 1_000: 2, 10_000: 3}  # N → minute boundaries measured
QUICK: dict[int, int] = {100: 1, 1_000: 1}
LEAD = 14.0  # open the runtime this long before the first boundary
IDLE = 6.0  # then measure the idle CPU rate for this long (nothing due)
TAIL = 30.0  # one-shots up to this long after the last boundary


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def _build(db: Path, n: int, first: float, at_times: list[float]) -> None:
    """Write the jobs as ``add_job`` would, with ``first`` as every cron job's next slot."""
    specs = [JobSpec(name=f"cron-{i:05d}", target=NOOP, cron="* * * * *") for i in range(n)]
    specs += [JobSpec(name=f"at-{i:05d}", target=NOOP, at=_iso(t)) for i, t in enumerate(at_times)]
    ops = [save_op(spec, first - 1.0) for spec in specs]
    store = await SqliteStore.open(db)
    try:
        for i in range(0, len(ops), 1000):
            await store.apply(ops[i : i + 1000])
    finally:
        await store.close()


async def _sample_rss(peak: list[float]) -> None:
    while True:
        peak[0] = max(peak[0], rss_mib())
        await anyio.sleep(0.25)


async def measure(db: Path, n: int, minutes: int) -> dict[str, float]:
    """One size: build, open before a boundary, record every commit, return figures."""
    now = time.time()
    first = (now // 60 + 1) * 60
    if first - now < LEAD + 5.0:
        first += 60
    last = first + (minutes - 1) * 60
    rng = random.Random(n)
    at_times = sorted(rng.uniform(first + 0.5, last + TAIL) for _ in range(n // 10))
    await _build(db, n, first, at_times)
    await anyio.sleep(max(0.0, first - LEAD - time.time()))
    lateness: list[tuple[float, float]] = []  # (slot, commit - slot)

    def observe(done: float, slots: list[float]) -> None:
        lateness.extend((s, done - s) for s in slots)

    rss0 = rss_mib()
    cfg = Config(database=str(db), concurrency=64, synchronous="NORMAL")
    async with Runtime.open(cfg, targets={NOOP: noop}) as rt, anyio.create_task_group() as tg:
        rss_open = rss_mib()
        scheduler = rt._actors["scheduler"]  # the bench reads the actor's commit hook
        scheduler.observe = observe
        peak = [rss_open]
        tg.start_soon(_sample_rss, peak)
        while not rt.statistics()["scheduler"]["idle"]:  # start-up: next slots prepared
            await anyio.sleep(0.05)
        idle0, t0 = time.process_time(), time.time()
        await anyio.sleep(min(IDLE, first - 2.0 - t0))
        idle_rate = (time.process_time() - idle0) / (time.time() - t0)
        await anyio.sleep(max(0.0, first - 1.0 - time.time()))
        cpu0, w0 = time.process_time(), time.time()
        expected = n * minutes + len(at_times)
        with anyio.fail_after(last + TAIL + 120 - time.time()):
            while len(lateness) < expected:
                await anyio.sleep(0.05)
            while (await rt.stats())["dispatches"]["queued"] or rt.statistics()["dispatcher"][
                "running"
            ]:
                await anyio.sleep(0.05)
        cpu, span = time.process_time() - cpu0, time.time() - w0
        stats = rt.statistics()["scheduler"]
        tg.cancel_scope.cancel()
    assert stats["duplicates"] == 0 and stats["missed"] == 0, stats
    boundaries = {first + 60 * k for k in range(minutes)}
    cron = [late for slot, late in lateness if slot in boundaries]
    at = [late for slot, late in lateness if slot not in boundaries]
    per_boundary = [
        max(late for slot, late in lateness if slot == first + 60 * k) for k in range(minutes)
    ]
    every = [late for _, late in lateness]
    p = percentiles(every)
    fire_pass = statistics.fmean(per_boundary)
    return {
        "slots": float(len(every)),
        "lateness_p50": p.p50 * 1000,
        "lateness_p99": p.p99 * 1000,
        "lateness_max": p.max * 1000,
        "cron_lateness_p99": percentiles(cron).p99 * 1000,
        "at_lateness_p99": percentiles(at).p99 * 1000 if at else 0.0,
        "fire_pass": fire_pass * 1000,
        "commit_per_slot": fire_pass / n * 1e6,
        "cpu_per_slot": (cpu - idle_rate * span) / len(every) * 1e6,
        "cpu_gross_per_slot": cpu / len(every) * 1e6,
        "cpu_idle": idle_rate * 1000,
        "rss_jobs": rss_open - rss0,
        "rss_peak": peak[0],
    }


async def run(ctx: BenchContext) -> list[Result]:
    sizes = QUICK if ctx.quick else SIZES
    out: list[Result] = []
    cpu: dict[int, float] = {}
    with runtime_log(Path(ctx.workdir) / "scheduler-bench.log"):
        for n, minutes in sizes.items():
            f = await measure(ctx.path("scheduler", f"s{n}.db"), n, minutes)
            cpu[n] = f["cpu_per_slot"]
            note = f"{int(f['slots'])} slots over {minutes} min, real clock"
            out += [
                result(SCENARIO, "sched_lateness_p50", f["lateness_p50"], "ms", n, note=note),
                result(SCENARIO, "sched_lateness_p99", f["lateness_p99"], "ms", n),
                result(SCENARIO, "sched_lateness_max", f["lateness_max"], "ms", n),
                result(SCENARIO, "sched_at_lateness_p99", f["at_lateness_p99"], "ms", n),
                result(SCENARIO, "sched_fire_pass", f["fire_pass"], "ms", n),
                result(SCENARIO, "sched_commit_per_slot", f["commit_per_slot"], "us", n),
                result(
                    SCENARIO,
                    "sched_cpu_per_slot",
                    f["cpu_per_slot"],
                    "us",
                    n,
                    note="process CPU in the window minus the idle rate",
                ),
                result(SCENARIO, "sched_cpu_gross_per_slot", f["cpu_gross_per_slot"], "us", n),
                result(SCENARIO, "sched_cpu_idle", f["cpu_idle"], "ms/s", n),
                result(SCENARIO, "sched_rss_jobs", f["rss_jobs"], "MiB", n),
                result(SCENARIO, "sched_rss_peak", f["rss_peak"], "MiB", n),
            ]
    lo, hi = min(cpu), max(cpu)
    if lo != hi:
        out.append(
            result(
                SCENARIO,
                "sched_cpu_flatness",
                cpu[hi] / cpu[lo],
                "x",
                note=f"cpu per slot at {hi} / at {lo} jobs",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.scheduler_bench")
    args.add_argument("--quick", action="store_true")
    quick = args.parse_args(argv).quick
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as work:
        ctx = BenchContext(workdir=work, quick=quick)
        results: list[Any] = anyio.run(
            run, ctx, backend="asyncio", backend_options={"use_uvloop": True}
        )
    for r in results:
        print(f"{r.metric:24} n={r.n!s:>6} {r.value:10.3f} {r.unit} {r.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
