"""The process an end-to-end run happens in (``python -m bench.shepherd_worker``).

One embedded runtime on a fresh database, one producer in the same event loop, and
completions counted from ``OutcomeEvent``s (``rt.subscribe``), never by polling the
database. Prints one JSON line: ``{"rate", "elapsed", "rss_after", "stats"}``. A run
of its own process so that its RSS is the runtime's, not the harness's, and so that
it can be profiled alone::

    python -m pyinstrument -m bench.shepherd_worker --db /path/e2e.db --n 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import anyio

from bench.report import rss_mib
from bench.shepherd_bench import NOOP, open_runtime
from shepherd.actors.messages import OutcomeEvent
from shepherd.runtime.app import Runtime
from shepherd.store.models import EnqueueRequest

BATCH = 1_000


async def _produce(rt: Runtime, n: int, producer: str) -> None:
    if producer == "single":
        for _ in range(n):
            await rt.enqueue(NOOP)
        return
    for i in range(0, n, BATCH):
        await rt.enqueue_many([EnqueueRequest(job=NOOP) for _ in range(min(BATCH, n - i))])


async def e2e(db: str, n: int, concurrency: int, producer: str, stall: float) -> dict[str, Any]:
    done = failed = 0

    async def watchdog() -> None:
        seen, at = -1, time.monotonic()
        while True:
            await anyio.sleep(0.5)
            if done != seen:
                seen, at = done, time.monotonic()
            elif time.monotonic() - at > stall:
                raise TimeoutError(f"no completion for {stall:g}s ({done}/{n} done)")

    async with open_runtime(db, concurrency=concurrency) as rt:
        async with (
            rt.subscribe(OutcomeEvent, buffer=n + BATCH) as events,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(watchdog)
            start, cpu = time.perf_counter(), time.process_time()
            tg.start_soon(_produce, rt, n, producer)
            async for ev in events:
                assert isinstance(ev, OutcomeEvent)
                if ev.final:
                    done += 1
                    failed += ev.outcome != "ok"
                    if done == n:
                        break
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            tg.cancel_scope.cancel()
        rss_after = rss_mib()
        stats = rt.statistics()
    if failed:
        raise RuntimeError(f"{failed} of {n} no-op jobs did not end ok")
    if stats["events"]["dropped"]:
        raise RuntimeError(f"the subscriber lost {stats['events']['dropped']} events")
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "rss_after": rss_after,
        "cpu_per_job": cpu / n * 1e6,
        "stats": {k: stats[k] for k in ("dispatcher", "store")},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shepherd_worker")
    p.add_argument("--db", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--producer", choices=("batch", "single"), default="batch")
    p.add_argument("--stall", type=float, default=30.0)
    args = p.parse_args(argv)
    try:  # the harness's choice (bench.scenarios), without importing the peers
        import uvloop  # noqa: F401

        use_uvloop = True
    except ImportError:  # pragma: no cover
        use_uvloop = False
    out = anyio.run(
        e2e,
        args.db,
        args.n,
        args.concurrency,
        args.producer,
        args.stall,
        backend="asyncio",
        backend_options={"use_uvloop": use_uvloop},
    )
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
