"""The process a backlog measurement happens in (``python -m bench.shepherd_backlog_worker``).

Opens a runtime (concurrency 64) on a database that already holds a backlog of queued
no-op dispatches, notes its RSS once the dispatcher is ready (the window loaded), then
runs ``--drain`` of them, timing the first run → the last (counted in the target, so
no event stream or poll is in the way), and sampling RSS every 50 ms meanwhile. Prints
one JSON line: ``{"rss_open", "rss_peak", "elapsed", "cpu", "count", "held", "window"}``
(``cpu``: the process's CPU seconds over the same span, every thread of it). A
process of its own so that its RSS is the runtime's, not the harness's::

    python -m bench.shepherd_backlog_worker --db /path/backlog.db --drain 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import anyio

from bench.report import rss_mib
from bench.shepherd_bench import NOOP
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config

CONCURRENCY = 64


class _Counter:
    def __init__(self, n: int) -> None:
        self.n, self.count = n, 0
        self.first = self.last = self.cpu_first = self.cpu_last = 0.0
        self.done = anyio.Event()

    async def __call__(self, _ctx: Any) -> None:
        self.count += 1
        if self.count == 1:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        if self.count == self.n:
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            self.done.set()


async def measure(db: str, drain: int, stall: float) -> dict[str, Any]:
    counter = _Counter(drain)
    peak = [0.0]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mib())
            await anyio.sleep(0.05)

    cfg = Config(database=db, concurrency=CONCURRENCY)
    async with Runtime.open(cfg, targets={NOOP: counter}) as rt:
        rss_open = rss_mib()
        st = rt.statistics()["dispatcher"]
        held, window = st["queued"], st.get("window")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            with anyio.fail_after(stall + 0.001 * drain):
                await counter.done.wait()
            held = max(held, rt.statistics()["dispatcher"]["queued"])
            tg.cancel_scope.cancel()
    return {
        "rss_open": rss_open,
        "rss_peak": max(peak[0], rss_open),
        "elapsed": counter.last - counter.first,
        "cpu": counter.cpu_last - counter.cpu_first,
        "count": counter.count,
        "held": held,
        "window": window,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.shepherd_backlog_worker")
    p.add_argument("--db", required=True, help="SQLite path or postgresql:// URL")
    p.add_argument("--drain", type=int, required=True, help="runs to time")
    p.add_argument("--stall", type=float, default=60.0)
    args = p.parse_args(argv)
    report = anyio.run(measure, args.db, args.drain, args.stall)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
