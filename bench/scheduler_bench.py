"""``shepherd-scheduler``: N cron jobs firing every minute plus N/10 one-shot jobs,
through the real scheduler, dispatcher and store, on the real clock (issue 3).

For each N in `SIZES` (N jobs ``* * * * *`` plus N/10 ``at`` jobs at random instants
spread over the window), the database is written first (the ``SaveJob`` ops
``add_job`` would write), then an embedded runtime is opened `LEAD` seconds before a
minute boundary and runs for `MINUTES` boundaries of real time. Every job is a no-op
``python`` target; the real dispatcher runs them all (concurrency 64). Per N:

- ``sched_lateness_{p50,p99,max}`` (ms): how late each slot's dispatch was committed:
  commit time minus its slot, 0 when it was committed ahead (``schedule_lead``, 2 s by
  default: its ``not_before`` is the slot), for every slot (the scheduler's ``observe``
  hook is called as each commit returns, with ``time.time()``);
  ``sched_at_lateness_p99`` for the one-shots alone; ``sched_ahead_min`` (ms): the
  smallest margin, slot minus commit (negative: a slot committed late).
- ``sched_first_start`` (ms): the first cron run's start (``time.time()`` in the
  target) minus its boundary, the worst boundary: the dispatcher starts a boundary on
  time; ``sched_last_start`` (ms): the last cron run's start minus its boundary, mean
  over the boundaries (N runs through concurrency 64: the dispatcher's rate, not the
  scheduler's).
- ``sched_fire_pass`` (ms): a boundary's first dispatch committed → its last (mean over
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
import msgspec

from bench.context import BenchContext
from bench.report import Result, percentiles, rss_mib
from bench.shepherd_bench import NOOP, noop, result, runtime_log
from shepherd.actors.executors.base import RunContext
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
STAMP = "stamp"  # the cron jobs' target: a no-op that notes when it started


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def _build(db: Path, n: int, first: float, at_times: list[float]) -> None:
    """Write the jobs as ``add_job`` would, with ``first`` as every cron job's next slot."""
    specs = [JobSpec(name=f"cron-{i:05d}", target=STAMP, cron="* * * * *") for i in range(n)]
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


async def measure(db: Path, n: int, minutes: int, lead: float | None = None) -> dict[str, float]:
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
    starts: list[float] = []  # the cron runs' first act, time.time()

    def observe(done: float, slots: list[float]) -> None:
        lateness.extend((s, done - s) for s in slots)

    async def stamp(ctx: RunContext) -> None:
        starts.append(time.time())

    rss0 = rss_mib()
    cfg = Config(database=str(db), concurrency=64, synchronous="NORMAL")
    if lead is not None:
        cfg = msgspec.structs.replace(cfg, schedule_lead=lead)
    lead = float(cfg.schedule_lead)
    targets = {NOOP: noop, STAMP: stamp}
    async with Runtime.open(cfg, targets=targets) as rt, anyio.create_task_group() as tg:
        rss_open = rss_mib()
        scheduler = rt._actors["scheduler"]  # the bench reads the actor's commit hook
        scheduler.observe = observe
        peak = [rss_open]
        tg.start_soon(_sample_rss, peak)
        while not rt.statistics()["scheduler"]["idle"]:  # start-up: next slots prepared
            await anyio.sleep(0.05)
        idle0, t0 = time.process_time(), time.time()
        await anyio.sleep(min(IDLE, first - lead - 2.0 - t0))
        idle_rate = (time.process_time() - idle0) / (time.time() - t0)
        await anyio.sleep(max(0.0, first - lead - 1.0 - time.time()))  # before the commit
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
    cron = [max(0.0, late) for slot, late in lateness if slot in boundaries]
    at = [max(0.0, late) for slot, late in lateness if slot not in boundaries]
    every = [max(0.0, late) for _, late in lateness]  # committed ahead: on time
    p = percentiles(every)
    # the commit pass of a boundary: from its first commit to its last (ahead or late)
    fire_pass = statistics.fmean(
        max(late for slot, late in lateness if slot == b)
        - min(late for slot, late in lateness if slot == b)
        for b in sorted(boundaries)
    )
    by_boundary = [[t - b for t in starts if b <= t < b + 60] for b in sorted(boundaries)]
    return {
        "slots": float(len(every)),
        "ahead_min": -max(late for _, late in lateness) * 1000,
        "first_start": max(min(s) for s in by_boundary) * 1000,
        "last_start": statistics.fmean(max(s) for s in by_boundary) * 1000,
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
                result(SCENARIO, "sched_ahead_min", f["ahead_min"], "ms", n),
                result(
                    SCENARIO,
                    "sched_first_start",
                    f["first_start"],
                    "ms",
                    n,
                    note="first cron run's start - its boundary, worst boundary",
                ),
                result(
                    SCENARIO,
                    "sched_last_start",
                    f["last_start"],
                    "ms",
                    n,
                    note="last cron run's start - its boundary (concurrency 64), mean",
                ),
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
        # the reference, in the same run: the largest size committed at the slot
        n, minutes = max(sizes.items())
        f = await measure(ctx.path("scheduler", f"s{n}-nolead.db"), n, minutes, lead=0.0)
        note = "schedule_lead = 0: each slot committed when it comes (the reference)"
        out += [
            result(SCENARIO, "sched_lateness_p50.no_lead", f["lateness_p50"], "ms", n, note=note),
            result(SCENARIO, "sched_lateness_p99.no_lead", f["lateness_p99"], "ms", n),
            result(SCENARIO, "sched_first_start.no_lead", f["first_start"], "ms", n),
            result(SCENARIO, "sched_last_start.no_lead", f["last_start"], "ms", n),
            result(SCENARIO, "sched_cpu_per_slot.no_lead", f["cpu_per_slot"], "us", n),
        ]
        for metric in ("sched_lateness_p99", "sched_first_start", "sched_last_start"):
            ours = next(r for r in out if r.metric == metric and r.n == n)
            out.append(
                result(
                    SCENARIO,
                    f"{metric}.vs_no_lead",
                    ours.value,
                    "ms",
                    n,
                    ratio_to=f"{SCENARIO}:{metric}.no_lead",
                )
            )
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
