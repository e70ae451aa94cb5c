"""A producer in another process (``python -m bench.shepherd_producer``), as the CLI is.

Opens the database with ``SqliteStore`` and commits one dispatch of ``--job`` per
call (``InsertDispatches``, origin ``bench-producer``) whose payload carries
``{"t": time.time()}`` taken just before the commit, then calls
``send_wake(db, "d")``: exactly what ``shepherd enqueue`` does, minus its process
start. Either at a steady ``--rate`` for ``--duration`` seconds (``shepherd-pickup``),
or ``--count`` dispatches flat out (``--rate 0``, ``shepherd-xproc``).
Prints ``ready`` once the store is open, and at the end one JSON line: ``{"count",
"lag_max", "start", "end", "wakes_dropped", "commit_p50", "commit_p99"}``: how far
behind its schedule the producer ever fell (s), ``time.monotonic()`` just before the
first commit and just after the last wake-up (one clock across processes on Linux and
macOS), how many wake-ups found no socket or a full one (``send_wake`` returned False),
and the commit call's latency (s; it includes waits for another writer's lock).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio

from bench.report import percentiles
from shepherd.actors.ingest import send_wake
from shepherd.runtime.jobs import new_dispatch  # what the CLI uses to turn a request into a row
from shepherd.store.models import EnqueueRequest
from shepherd.store.ops import InsertDispatches
from shepherd.store.sqlite import SqliteStore

ORIGIN = "bench-producer"


async def produce(db: str, job: str, rate: float, count: int) -> dict[str, float]:
    store = await SqliteStore.open(db, create=False)
    try:
        row = await store.job(job)
        if row is None:
            raise RuntimeError(f"no job {job!r} in {db}")
        print("ready", flush=True)
        lag_max = 0.0
        dropped = 0
        commits: list[float] = []
        start = time.monotonic()
        for i in range(count):
            if rate > 0:
                due = start + i / rate
                if (wait := due - time.monotonic()) > 0:
                    await anyio.sleep(wait)
                lag_max = max(lag_max, time.monotonic() - due)
            now = time.time()
            req = EnqueueRequest(job=job, payload={"t": now})
            new = new_dispatch(row, req, now, where="enqueue")
            began = time.perf_counter()
            await store.apply_one(InsertDispatches([new], ORIGIN, now))
            commits.append(time.perf_counter() - began)
            dropped += not send_wake(db, "d")
        end = time.monotonic()
    finally:
        await store.close(checkpoint=False)
    pct = percentiles(commits or [0.0])
    return {
        "count": count,
        "lag_max": lag_max,
        "start": start,
        "end": end,
        "wakes_dropped": dropped,
        "commit_p50": pct.p50,
        "commit_p99": pct.p99,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shepherd_producer")
    p.add_argument("--db", required=True)
    p.add_argument("--job", default="stamp")
    p.add_argument("--rate", type=float, default=500.0, help="jobs/s; 0: flat out")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--count", type=int, help="dispatches in all (default: rate x duration)")
    args = p.parse_args(argv)
    count = args.count if args.count is not None else int(args.rate * args.duration)
    out = anyio.run(produce, args.db, args.job, args.rate, count)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
