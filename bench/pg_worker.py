"""One node of the PostgreSQL benchmark (``python -m bench.pg_worker SYSTEM DSN``): the
worker of shepherd, pgqueuer or procrastinate in a process of its own, running no-op
jobs until it is terminated.

It reports on stdout, one JSON object per line: ``{"ready": t}`` once its worker takes
jobs, then every ``REPORT_EVERY`` seconds while it makes progress ``{"count": c,
"last": t, "lat": [...]}``: jobs run so far, the ``time.monotonic()`` of the latest
(one clock for every process on Linux), and the pickup latencies (``time.time()`` at
the body's start minus the producer's stamp, seconds) of the stamped jobs run since
the previous line. Counting happens in the body itself, never by polling a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import anyio

from bench.peers.pg_peers import PEERS, PgSystem
from bench.shepherd_pg import CONCURRENCY, Shepherd

REPORT_EVERY = 0.02

SYSTEMS: dict[str, PgSystem] = {"shepherd": Shepherd(), **PEERS}


class _Tally:
    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.lat: list[float] = []

    def done(self, t: float | None) -> None:
        if t is not None:
            self.lat.append(time.time() - t)
        self.count += 1
        self.last = time.monotonic()


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _report(tally: _Tally) -> None:
    seen = 0
    while True:
        await anyio.sleep(REPORT_EVERY)
        if tally.count != seen:
            seen = tally.count
            lat, tally.lat = tally.lat, []
            _emit({"count": tally.count, "last": tally.last, "lat": lat})


async def _main(system: str, dsn: str, concurrency: int) -> None:
    tally = _Tally()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_report, tally)
        await SYSTEMS[system].work(
            dsn, concurrency, tally.done, lambda: _emit({"ready": time.monotonic()})
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pg_worker")
    p.add_argument("system", choices=sorted(SYSTEMS))
    p.add_argument("dsn")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        import uvloop  # noqa: F401

        use_uvloop = True
    except ImportError:  # pragma: no cover
        use_uvloop = False
    try:
        anyio.run(
            _main,
            args.system,
            args.dsn,
            args.concurrency,
            backend="asyncio",
            backend_options={"use_uvloop": use_uvloop},
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
