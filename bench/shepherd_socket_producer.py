"""A producer in another process that enqueues through the daemon's enqueue socket
(``python -m bench.shepherd_socket_producer``), with ``shepherd.runtime.producer``.

``--rate 0 --count n``: flat out, one request per job, pipelined (``enqueue_many`` of
``--window`` requests per call, each its own frame); ``--rate R --duration D``: one
``enqueue`` per job on schedule, each awaited, the payload ``{"t": time.time()}`` taken
just before the call (``shepherd-socket``'s pickup latency). Prints ``ready`` once
connected, and at the end one JSON line: ``{"count", "lag_max", "start", "end",
"sent", "direct", "ack_p50", "ack_p99"}`` (``time.monotonic()``; ack: the call's
latency, paced mode only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.report import percentiles
from shepherd.runtime.producer import Producer


def produce(db: str, job: str, rate: float, count: int, window: int) -> dict[str, float]:
    with Producer(db, timeout=60) as p:
        if not p.connected():
            raise RuntimeError(f"no daemon serves {db}")
        print("ready", flush=True)
        lag_max = 0.0
        acks: list[float] = []
        start = time.monotonic()
        if rate <= 0:
            for i in range(0, count, window):
                got = p.enqueue_many({"job": job} for _ in range(min(window, count - i)))
                if not all(isinstance(g, int) for g in got):
                    raise RuntimeError(f"refused: {[g for g in got if not isinstance(g, int)][:3]}")
        else:
            for i in range(count):
                due = start + i / rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                lag_max = max(lag_max, time.monotonic() - due)
                began = time.perf_counter()
                p.enqueue(job, {"t": time.time()})
                acks.append(time.perf_counter() - began)
        end = time.monotonic()
        sent, direct = p.sent, p.direct
    pct = percentiles(acks or [0.0])
    return {
        "count": count,
        "lag_max": lag_max,
        "start": start,
        "end": end,
        "sent": sent,
        "direct": direct,
        "ack_p50": pct.p50,
        "ack_p99": pct.p99,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shepherd_socket_producer")
    p.add_argument("--db", required=True)
    p.add_argument("--job", default="stamp")
    p.add_argument("--rate", type=float, default=0.0, help="jobs/s; 0: flat out")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--count", type=int, help="dispatches in all (default: rate x duration)")
    p.add_argument("--window", type=int, default=2_000, help="requests per call (flat out)")
    args = p.parse_args(argv)
    count = args.count if args.count is not None else int(args.rate * args.duration)
    out = produce(args.db, args.job, args.rate, count, args.window)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
