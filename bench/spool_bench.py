"""``spool``: files dropped into the spool directory → dispatches → runs, beside
``rt.enqueue`` of the same jobs, measured in the same run.

An embedded runtime watches ``[spool] dir``; every file is an OpenClaw spool event v1
whose agent turn runs as the spool's default job, a ``python`` target that reads
``time.time()`` as its first act. The files are written by another process
(``python -m bench.spool_bench``, below), as any producer of the spool is: it writes
``<id>.json.tmp.<uuid>`` first (ignored by the watcher), then stamps ``time.time()``
and renames it to ``<id>.json`` (one clock across processes).

- ``ingest_burst``: 1,000 files (``--quick``: n) renamed into the directory at once:
  first rename → the directory empty and every run started, in files/s; ratio to
  ``enqueue_burst``: the same number of ``rt.enqueue`` calls started at once, first call
  → last run start.
- ``ingest_steady``: 200 files/s for 10 s (``--quick``: 1 s): files/s achieved (first
  rename → last run start), ratio to ``enqueue_steady``; ``pickup_{p50,p99,max}``: a
  file's rename → its run's start, ratio to ``enqueue_pickup_*``: ``rt.enqueue`` at the
  same rate, one task per job started on schedule, call → run start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result, percentiles
from bench.shepherd_bench import result, runtime_log
from bench.shepherd_e2e import _CODE_ROOT, child_env
from shepherd.actors.executors.base import RunContext
from shepherd.actors.spool.config import SpoolConfig
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.store.models import JobSpec

SCENARIO = "spool"
BURST = 1_000
RATE = 200.0
DURATION = 10.0
QUICK_DURATION = 1.0
JOB = "turn"


class _Runs:
    """``time.time()`` at the start of each run, by the sequence number in its message."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}

    async def target(self, ctx: RunContext) -> None:
        now = time.time()
        self.started[_seq(ctx.payload)] = now

    async def wait(self, count: int, timeout: float) -> None:
        with anyio.fail_after(timeout):
            while len(self.started) < count:
                await anyio.sleep(0.002)


def _seq(payload: dict[str, Any]) -> int:
    message = payload.get("message", payload.get("t"))
    return int(str(message).removeprefix("seq "))


@asynccontextmanager
async def _runtime(db: Path, spool: Path | None, runs: _Runs) -> AsyncIterator[Runtime]:
    job = JobSpec(name=JOB, target=JOB)
    sp = SpoolConfig(dir=str(spool), default_job=JOB) if spool is not None else None
    cfg = Config(database=str(db), concurrency=64, synchronous="NORMAL", jobs=[job], spool=sp)
    async with Runtime.open(cfg, targets={JOB: runs.target}) as rt:
        yield rt


async def _produce(spool: Path, count: int, rate: float, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.spool_bench", "--dir", str(spool)]
    cmd += ["--count", str(count), "--rate", str(rate)]
    with anyio.fail_after(timeout):
        proc = await anyio.run_process(
            cmd, cwd=_CODE_ROOT, env=child_env(), check=False, stderr=subprocess.STDOUT
        )
    out = proc.stdout.decode()
    if proc.returncode != 0:
        raise RuntimeError(f"producer failed ({proc.returncode}): {out[-2000:]}")
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def _pending(spool: Path) -> int:
    return sum(1 for n in os.listdir(spool) if n.endswith(".json"))


async def spool_burst(ctx: BenchContext, n: int) -> float:
    runs = _Runs()
    spool = ctx.fresh_dir(SCENARIO, "burst")
    async with _runtime(ctx.path(SCENARIO, "burst.db"), spool, runs):
        report = await _produce(spool, n, 0, ctx.stall_timeout)
        await runs.wait(n, ctx.stall_timeout)
        with anyio.fail_after(ctx.stall_timeout):
            while _pending(spool):
                await anyio.sleep(0.002)
        done = time.time()
    return n / (max(done, *runs.started.values()) - report["renames"][0])


async def enqueue_burst(ctx: BenchContext, n: int) -> float:
    runs = _Runs()
    async with _runtime(ctx.path(SCENARIO, "burst_enqueue.db"), None, runs) as rt:
        start = time.time()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(rt.enqueue, JOB, {"message": f"seq {i}"})
        await runs.wait(n, ctx.stall_timeout)
    return n / (max(runs.started.values()) - start)


async def spool_steady(ctx: BenchContext, duration: float) -> tuple[float, list[float]]:
    runs = _Runs()
    spool = ctx.fresh_dir(SCENARIO, "steady")
    count = int(RATE * duration)
    async with _runtime(ctx.path(SCENARIO, "steady.db"), spool, runs):
        report = await _produce(spool, count, RATE, duration + ctx.stall_timeout)
        await runs.wait(count, ctx.stall_timeout)
    if report["lag_max"] > 1.0:
        raise RuntimeError(f"the producer fell {report['lag_max']:.3f}s behind its schedule")
    renames: list[float] = report["renames"]
    latencies = [runs.started[i] - t for i, t in enumerate(renames)]
    return count / (max(runs.started.values()) - renames[0]), latencies


async def enqueue_steady(ctx: BenchContext, duration: float) -> tuple[float, list[float]]:
    runs = _Runs()
    count = int(RATE * duration)
    called: dict[int, float] = {}
    async with _runtime(ctx.path(SCENARIO, "steady_enqueue.db"), None, runs) as rt:

        async def one(i: int) -> None:
            called[i] = time.time()
            await rt.enqueue(JOB, {"message": f"seq {i}"})

        async with anyio.create_task_group() as tg:
            start = time.monotonic()
            for i in range(count):
                if (wait := start + i / RATE - time.monotonic()) > 0:
                    await anyio.sleep(wait)
                tg.start_soon(one, i)
        await runs.wait(count, ctx.stall_timeout)
    rate = count / (max(runs.started.values()) - called[0])
    return rate, [runs.started[i] - called[i] for i in range(count)]


def _latency(name: str, samples: list[float], ref: str | None, note: str) -> list[Result]:
    pct = percentiles(samples)
    return [
        result(
            SCENARIO,
            f"{name}_{k}",
            v * 1000,
            "ms",
            len(samples),
            f"{SCENARIO}:{ref}_{k}" if ref else None,
            note,
        )
        for k, v in (("p50", pct.p50), ("p99", pct.p99), ("max", pct.max))
    ]


async def run(ctx: BenchContext) -> list[Result]:
    n = min(BURST, ctx.sizes[0]) if ctx.quick else BURST
    duration = QUICK_DURATION if ctx.quick else DURATION
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        ref_burst = await enqueue_burst(ctx, n)
        burst = await spool_burst(ctx, n)
        ref_steady, ref_pickup = await enqueue_steady(ctx, duration)
        steady, pickup = await spool_steady(ctx, duration)
    steady_note = f"{RATE:,.0f} files/s for {duration:g} s"
    ref_note = f"rt.enqueue at {RATE:,.0f}/s for {duration:g} s"
    return [
        result(
            SCENARIO,
            "enqueue_burst",
            ref_burst,
            "jobs/s",
            n,
            None,
            f"{n} rt.enqueue calls at once: first call -> last run start",
        ),
        result(
            SCENARIO,
            "ingest_burst",
            burst,
            "files/s",
            n,
            f"{SCENARIO}:enqueue_burst",
            f"{n} files renamed in at once: first rename -> dir empty, last run started",
        ),
        result(SCENARIO, "enqueue_steady", ref_steady, "jobs/s", len(ref_pickup), None, ref_note),
        result(
            SCENARIO,
            "ingest_steady",
            steady,
            "files/s",
            len(pickup),
            f"{SCENARIO}:enqueue_steady",
            steady_note + ": first rename -> last run start",
        ),
        *_latency("enqueue_pickup", ref_pickup, None, ref_note + ": call -> run start"),
        *_latency("pickup", pickup, "enqueue_pickup", steady_note + ": rename -> run start"),
    ]


# -- the producer process -------------------------------------------------------------


def _event(seq: int, now: float) -> bytes:
    event_id = str(uuid.uuid4())
    created = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    event = {
        "version": 1,
        "id": event_id,
        "createdAt": created.replace("+00:00", "Z"),
        "createdAtMs": int(now * 1000),
        "retryCount": 0,
        "payload": {"kind": "agentTurn", "message": f"seq {seq}"},
    }
    return json.dumps(event).encode()


def produce(spool: Path, count: int, rate: float) -> dict[str, Any]:
    """Write ``count`` events; each a temp file first, stamped, then renamed in. With
    ``rate`` 0 every temp file is written first and the renames follow one another."""
    renames: list[float] = []
    lag_max = 0.0

    def write_tmp(seq: int) -> tuple[Path, Path]:
        data = _event(seq, time.time())
        event_id = json.loads(data)["id"]
        final = spool / f"{event_id}.json"
        tmp = spool / f"{event_id}.json.tmp.{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
        return tmp, final

    if rate <= 0:
        pairs = [write_tmp(i) for i in range(count)]
        for tmp, final in pairs:
            renames.append(time.time())
            os.rename(tmp, final)
    else:
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            lag_max = max(lag_max, time.monotonic() - due)
            tmp, final = write_tmp(i)
            renames.append(time.time())
            os.rename(tmp, final)
    return {"count": count, "lag_max": lag_max, "renames": renames}


def main() -> None:
    p = argparse.ArgumentParser(description="write spool event files (bench producer)")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0, help="files/s; 0: all at once")
    args = p.parse_args()
    print(json.dumps(produce(args.dir, args.count, args.rate)), flush=True)


if __name__ == "__main__":
    main()
