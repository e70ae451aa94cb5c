"""A producer in another process (``python -m bench.shepherd_producer``), as the CLI is.

Opens the database with ``SqliteStore``, and at a steady ``--rate`` for ``--duration``
seconds commits one dispatch of ``--job`` (``InsertDispatches``, origin
``bench-producer``) whose payload carries ``{"t": time.time()}`` taken just before the
commit, then calls ``send_wake(db, "d")``: exactly what ``shepherd enqueue`` does.
Prints ``ready`` once the store is open, and at the end one JSON line:
``{"count", "lag_max"}`` (how far behind its schedule the producer ever fell, s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio

from actors.ingest import send_wake
from runtime.jobs import new_dispatch  # what the CLI uses to turn a request into a row
from store import queries
from store.models import EnqueueRequest
from store.ops import InsertDispatches
from store.sqlite import SqliteStore

ORIGIN = "bench-producer"


async def produce(db: str, job: str, rate: float, duration: float) -> dict[str, float]:
    store = await SqliteStore.open(db, create=False)
    try:
        row = await store.read(queries.get_job, job)
        if row is None:
            raise RuntimeError(f"no job {job!r} in {db}")
        print("ready", flush=True)
        count = int(rate * duration)
        start = time.perf_counter()
        lag_max = 0.0
        for i in range(count):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await anyio.sleep(wait)
            lag_max = max(lag_max, time.perf_counter() - due)
            now = time.time()
            req = EnqueueRequest(job=job, payload={"t": now})
            new = new_dispatch(row, req, now, where="enqueue")
            await store.apply_one(InsertDispatches([new], ORIGIN, now))
            send_wake(db, "d")
    finally:
        await store.close()
    return {"count": count, "lag_max": lag_max}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shepherd_producer")
    p.add_argument("--db", required=True)
    p.add_argument("--job", default="stamp")
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args(argv)
    out = anyio.run(produce, args.db, args.job, args.rate, args.duration)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
