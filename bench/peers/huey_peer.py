"""Peer: huey on SQLite (``SqliteStorage``, WAL), the closest embedded job queue.

Workload: a no-op task, a single producer in this process, and the consumer as huey
users run it: ``huey_consumer <app> -w WORKERS -k thread`` in its own process (here
``-n``: no periodic tasks, ``-q``: warnings only, so per-task INFO logging does not
count against huey; polling delay and backoff are huey's defaults). Once per
synchronous mode (``full`` = huey's default, ``normal`` = shepherd's) and size ``n``:

- ``enqueue.<sync>``: ``noop()`` n times into an empty queue, no consumer running.
- ``drain_backlog.<sync>``: a consumer started on those n queued tasks; from the first
  worker's start-up hook to the n-th completion.
- ``e2e.<sync>``: a consumer already running on a fresh queue; from the first enqueue to
  the n-th completion (the producer enqueues flat out).
- ``worker_rss_peak.<sync>``: the consumer process's peak RSS during ``e2e``, sampled
  every 100 ms with psutil.

Completions are counted by a ``SIGNAL_COMPLETE`` handler inside the consumer (see
``_huey_app``); a task error, a dead consumer, no progress for ``ctx.stall_timeout``
seconds, or an overall deadline stops the scenario with an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.context import BenchContext
from bench.peers._huey_app import make_huey
from bench.report import Result, rss_mib, stop_process

SCENARIO = "huey"
# huey's default. On the no-op workload 2, 4 and 8 thread workers were slower at
# synchronous=NORMAL (they share one connection behind a lock): 10k tasks drained at
# 7.2k/s with 1 worker, 4.6k/s with 2 (2-core machine, 2026-11). Revisit for I/O tasks.
WORKERS = 1
_REPO = Path(__file__).resolve().parents[2]
_POLL = 0.005
_RSS_EVERY = 0.1


def enqueue(db: Path, n: int, sync: str) -> tuple[float, str]:
    """Enqueue ``n`` no-op tasks; return (tasks/s, PRAGMA facts seen by the producer)."""
    huey, noop = make_huey(str(db), sync)
    try:
        start = time.perf_counter()
        for _ in range(n):
            noop()
        elapsed = time.perf_counter() - start
        if (pending := huey.pending_count()) != n:
            raise RuntimeError(f"huey holds {pending} pending tasks, expected {n}")
        conn = huey.storage.conn
        journal = conn.execute("pragma journal_mode").fetchone()[0]
        synchronous = conn.execute("pragma synchronous").fetchone()[0]
    finally:
        huey.storage.close()
    return n / elapsed, f"journal_mode={journal} synchronous={synchronous}"


class _Consumer:
    """A running ``huey_consumer`` subprocess and the markers it writes."""

    def __init__(self, proc: subprocess.Popen[bytes], markers: Path, log: Path) -> None:
        self.proc = proc
        self.markers = markers
        self.log = log
        self.rss_peak = 0.0
        self._stop = threading.Event()
        # A thread, so that RSS is sampled while this process is busy enqueueing too.
        self._sampler = threading.Thread(target=self._sample_rss, name="rss", daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        """Stop sampling RSS, then stop the consumer (SIGTERM, SIGKILL after 10 s)."""
        self._stop.set()
        self._sampler.join()
        stop_process(self.proc, 10)

    def wait_marker(self, name: str, ctx: BenchContext, deadline: float) -> float:
        """Block until marker ``name`` exists; return the monotonic time it holds."""
        path = self.markers / name
        progress, progressed_at = "", time.monotonic()
        while True:
            now = time.monotonic()
            if path.exists():
                return float(path.read_text())
            if (err := self.markers / "error").exists():
                raise RuntimeError(f"huey task failed: {err.read_text()}")
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"huey consumer exited ({self.proc.returncode}) waiting for {name!r}: "
                    + self.log.read_text()[-2000:]
                )
            current = _read(self.markers / "progress")
            if current != progress:
                progress, progressed_at = current, now
            if now - progressed_at > ctx.stall_timeout or now > deadline:
                raise TimeoutError(
                    f"huey stalled waiting for {name!r} (completed {progress or '<1000'})"
                )
            time.sleep(_POLL)

    def _sample_rss(self) -> None:
        while True:
            try:
                self.rss_peak = max(self.rss_peak, rss_mib(self.proc.pid))
            except psutil.Error:  # exiting: wait_marker reports an early death
                return
            if self._stop.wait(_RSS_EVERY):
                return


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@contextmanager
def consumer(ctx: BenchContext, db: Path, sync: str, target: int, tag: str) -> Iterator[_Consumer]:
    """Run huey's consumer CLI on ``db`` until the block exits, then stop it."""
    markers = ctx.fresh_dir(SCENARIO, f"markers_{tag}")
    log = markers / "consumer.log"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")])),
        SHEPHERD_BENCH_HUEY_DB=str(db),
        SHEPHERD_BENCH_HUEY_SYNC=sync,
        SHEPHERD_BENCH_HUEY_MARKERS=str(markers),
        SHEPHERD_BENCH_HUEY_TARGET=str(target),
    )
    cmd = [sys.executable, "-m", "huey.bin.huey_consumer", "bench.peers._huey_app.huey"]
    cmd += ["-w", str(WORKERS), "-k", "thread", "-n", "-q"]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, cwd=_REPO, stdout=log_file, stderr=log_file)
        c = _Consumer(proc, markers, log)
        try:
            yield c
        finally:
            c.stop()


def _deadline(n: int) -> float:
    # Generous: 20 s plus 5 ms per task (huey does ~1 ms); stalls are caught sooner.
    return time.monotonic() + 20 + 0.005 * n


def drain_backlog(ctx: BenchContext, db: Path, n: int, sync: str) -> float:
    """Tasks/s for a consumer started on ``n`` queued tasks: first worker up → n-th done."""
    with consumer(ctx, db, sync, n, f"backlog_{sync}_{n}") as c:
        deadline = _deadline(n)
        ready = c.wait_marker("ready", ctx, deadline)
        done = c.wait_marker("done", ctx, deadline)
    return n / (done - ready)


def e2e(ctx: BenchContext, n: int, sync: str) -> tuple[float, float, float]:
    """(tasks/s from first enqueue to n-th completion, consumer peak RSS in MiB, the
    consumer's CPU per task in µs from its first worker's start to the n-th completion,
    all its threads: its own ``cpu_ready`` / ``cpu_done`` markers)."""
    db = ctx.path(SCENARIO, f"e2e_{sync}_{n}.db")
    huey, noop = make_huey(str(db), sync)  # creates the tables before the consumer opens them
    try:
        with consumer(ctx, db, sync, n, f"e2e_{sync}_{n}") as c:
            deadline = _deadline(n)
            c.wait_marker("ready", ctx, deadline)
            start = time.monotonic()
            for _ in range(n):
                noop()
            done = c.wait_marker("done", ctx, deadline)
            cpu = float(_read(c.markers / "cpu_done")) - float(_read(c.markers / "cpu_ready"))
    finally:
        huey.storage.close()
    return n / (done - start), c.rss_peak, cpu / n * 1e6


def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    workers = f"-w {WORKERS} -k thread"
    for n in ctx.sizes:
        for sync in ("normal", "full"):
            ref = f"floor:commit_1row.{sync}"
            db = ctx.path(SCENARIO, f"backlog_{sync}_{n}.db")
            rate, pragmas = enqueue(db, n, sync)
            out.append(_result(f"enqueue.{sync}", rate, "tasks/s", n, ref, pragmas))
            rate = drain_backlog(ctx, db, n, sync)
            out.append(_result(f"drain_backlog.{sync}", rate, "tasks/s", n, ref, workers))
            rate, rss, cpu = e2e(ctx, n, sync)
            out.append(_result(f"e2e.{sync}", rate, "tasks/s", n, ref, workers))
            rss_ref = "floor:python_idle_rss"
            out.append(_result(f"worker_rss_peak.{sync}", rss, "MiB", n, rss_ref, "during e2e"))
            note = "the consumer's CPU (all threads) over e2e, per task"
            out.append(Result(scenario=SCENARIO, metric=f"worker_cpu_per_job.{sync}", value=cpu,
                              unit="µs", n=n, note=note))  # fmt: skip
    return out


def _result(metric: str, value: float, unit: str, n: int, ref: str, note: str) -> Result:
    return Result(
        scenario=SCENARIO, metric=metric, value=value, unit=unit, n=n, ratio_to=ref, note=note
    )
