"""``shepherd-memory``: the RSS of an embedded runtime, idle and after 10,000 runs.

A fresh process (``bench/shepherd_memory_worker.py``, run by path so that it loads
shepherd and nothing of the harness) opens a runtime on a new SQLite file with the
defaults: no HTTP, no spool, no gateway. The harness reads its RSS from outside
(psutil):

- ``rss_idle``: once it has been open and idle for a second;
- ``rss_after_runs``: after it ran 10,000 no-op jobs (``enqueue_many`` of 1,000, all
  outcomes seen), collected garbage and idled a second.

Both are against ``floor:python_idle_rss``, the bare interpreter of the same run. The
goals of the speed issue are absolute: ≤ 35 MiB idle, ≤ 45 MiB after 10,000 runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.context import BenchContext
from bench.report import Result, rss_mib
from bench.shepherd_bench import result
from bench.shepherd_e2e import child_env

SCENARIO = "shepherd-memory"
RUNS = 10_000
_WORKER = Path(__file__).with_name("shepherd_memory_worker.py")


def measure(db: Path, runs: int) -> tuple[float, float]:
    """(idle RSS, RSS after ``runs`` runs) of one worker process, in MiB."""
    with subprocess.Popen(
        [sys.executable, str(_WORKER), str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "idle":
                raise RuntimeError("the memory worker did not start")
            idle = rss_mib(proc.pid)
            proc.stdin.write(f"run {runs}\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "after":
                raise RuntimeError("the memory worker did not finish its runs")
            after = rss_mib(proc.pid)
            proc.stdin.write("quit\n")
            proc.stdin.close()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"the memory worker failed ({proc.returncode})")
    return idle, after


def run(ctx: BenchContext) -> list[Result]:
    runs = min(RUNS, max(ctx.sizes))  # --quick: its size
    idle, after = measure(ctx.path(SCENARIO, "memory.db"), runs)
    ref = "floor:python_idle_rss"
    note = "Runtime.open defaults, SQLite, no HTTP/spool/gateway; goal <= 35 MiB"
    return [
        result(SCENARIO, "rss_idle", idle, "MiB", None, ref, note),
        result(
            SCENARIO,
            "rss_after_runs",
            after,
            "MiB",
            runs,
            ref,
            f"after {runs:,} no-op runs, gc; goal <= 45 MiB",
        ),
    ]
