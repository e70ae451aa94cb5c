"""``http``: enqueue over the REST API against the real daemon, beside ``Runtime.enqueue``
in-process, in the same run.

The daemon is ``python -m shepherd run`` with ``[http] listen`` (concurrency 64,
synchronous NORMAL, no rate limit) in a subprocess; the HTTP clients are httpx in this
process, each with its own keep-alive connection.

- ``http_enqueue.c1`` / ``.c16``: ``POST /api/v1/dispatches`` N times (2,000; 400 with
  ``--quick``) from 1 client one after another / from 16 clients at once; dispatches
  due an hour ahead, so nothing runs meanwhile. Ratio to ``inproc_enqueue.c1`` /
  ``.c16``: ``await rt.enqueue`` by 1 / 16 tasks in an embedded runtime, same N.
- ``http_cpu.c1`` / ``.c16``: the daemon's CPU time (user + system) per POST, beside
  ``inproc_cpu.*``, this process's CPU per ``rt.enqueue``: what the HTTP layer costs
  the daemon, independent of how busy the machine is.
- ``http_pickup_{p50,p99}``: enqueue -> run start at a steady `RATE` (200/s) for
  `DURATION` s, one POST per job started on schedule over a pool of 16 keep-alive
  clients. The stamp is ``time.time()`` just before the request; the start is the run's
  ``started_at`` in the store (one clock, two processes). Ratio to
  ``inproc_pickup_{p50,p99}``: the same with ``rt.enqueue`` in-process.

Every figure is checked: the store holds exactly the dispatches (and runs) sent.
"""

from __future__ import annotations

import itertools
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import msgspec
import psutil

from bench.context import BenchContext
from bench.report import Result, percentiles, stop_process
from bench.shepherd_bench import NOOP, noop, open_runtime, result, runtime_log
from bench.shepherd_e2e import child_env

SCENARIO = "http"
TOKEN = "bench-http-token"
AHEAD = 3600.0
CLIENTS = 16
RATE = 200.0
DURATION, QUICK_DURATION = 10.0, 2.0
N, QUICK_N = 2_000, 400
WARMUP = 50

targets = {NOOP: noop}  # the daemon's app (--app bench.http_bench:targets)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        d = conn.execute("SELECT count(*) FROM dispatches").fetchone()[0]
        r = conn.execute("SELECT count(*) FROM runs WHERE started_at IS NOT NULL").fetchone()[0]
    return int(d), int(r)


def _latencies(db: Path, after_id: int) -> list[float]:
    """run start - the payload's stamp, for the dispatches with id > ``after_id``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT d.payload, min(r.started_at) FROM dispatches d JOIN runs r"
            " ON r.dispatch_id = d.id WHERE d.id > ? GROUP BY d.id",
            (after_id,),
        ).fetchall()
    return [float(started) - float(msgspec.json.decode(p)["t"]) for p, started in rows]


async def _wait_runs(db: Path, n: int, stall: float) -> None:
    with anyio.fail_after(stall):
        while _counts(db)[1] < n:
            await anyio.sleep(0.02)


class Daemon:
    """The real daemon on ``db`` serving HTTP on a free loopback port."""

    def __init__(self, ctx: BenchContext, name: str) -> None:
        self.db = ctx.path(SCENARIO, f"{name}.db")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stall = ctx.stall_timeout
        self._log = self.db.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Daemon:
        cfg = self.db.with_suffix(".toml")
        cfg.write_text(
            f'database = "{self.db.name}"\nconcurrency = 64\nsynchronous = "NORMAL"\n'
            f'app = "bench.http_bench:targets"\nshutdown_grace = "1s"\n'
            f'[http]\nlisten = "127.0.0.1:{self.port}"\nrate_limit = 0\n'
        )
        env = dict(child_env(), SHEPHERD_ADMIN_TOKEN=TOKEN)
        cmd = [sys.executable, "-m", "shepherd", "--config", str(cfg), "run"]
        log = self._log.open("wb")
        # started before the timed part; Popen here does not block the measured loop
        self._proc = subprocess.Popen(cmd, cwd=self.db.parent, env=env, stdout=log, stderr=log)  # noqa: ASYNC220
        async with self.client() as c:
            with anyio.fail_after(self.stall):
                while True:
                    if self._proc.poll() is not None:
                        raise RuntimeError(f"daemon exited: {self._log.read_text()[-2000:]}")
                    try:
                        if (await c.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.05)
            job = {"name": NOOP, "target": NOOP}
            (await c.post("/api/v1/jobs", json=job)).raise_for_status()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc is not None
        stop_process(self._proc, 30)

    def cpu(self) -> float:
        assert self._proc is not None
        return _cpu(psutil.Process(self._proc.pid))

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, limits=limits)


async def _spread(n: int, workers: int, one: Callable[[int], Awaitable[None]]) -> float:
    """``n`` calls of ``one(worker)`` over ``workers`` tasks; the elapsed seconds."""
    counter = itertools.count()

    async def loop(w: int) -> None:
        while next(counter) < n:
            await one(w)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(workers):
            tg.start_soon(loop, w)
    return time.perf_counter() - start


async def http_enqueue(ctx: BenchContext, n: int, workers: int) -> tuple[float, float]:
    """(dispatches/s, the daemon's CPU seconds per dispatch)."""
    async with Daemon(ctx, f"enqueue_c{workers}") as d:
        clients = [d.client() for _ in range(workers)]
        try:
            body = msgspec.json.encode({"job": NOOP, "delay": AHEAD})
            hdr = {"Content-Type": "application/json"}
            for c in clients:  # connect (keep-alive) before the timed part
                (await c.post("/api/v1/dispatches", content=body, headers=hdr)).raise_for_status()

            async def one(w: int) -> None:
                resp = await clients[w].post("/api/v1/dispatches", content=body, headers=hdr)
                if resp.status_code != 201:
                    raise RuntimeError(f"enqueue answered {resp.status_code}: {resp.text}")

            cpu = d.cpu()
            elapsed = await _spread(n, workers, one)
            cpu = d.cpu() - cpu
        finally:
            for c in clients:
                await c.aclose()
        if (got := _counts(d.db)[0]) != n + workers:
            raise RuntimeError(f"{got} dispatches stored for {n + workers} sent")
    return n / elapsed, cpu / n


async def inproc_enqueue(ctx: BenchContext, n: int, workers: int) -> tuple[float, float]:
    """(dispatches/s, this process's CPU seconds per dispatch)."""
    db = ctx.path(SCENARIO, f"inproc_c{workers}.db")
    async with open_runtime(db) as rt:
        await rt.enqueue(NOOP, delay=AHEAD)

        async def one(_w: int) -> None:
            await rt.enqueue(NOOP, delay=AHEAD)

        cpu = _cpu(psutil.Process())
        elapsed = await _spread(n, workers, one)
        cpu = _cpu(psutil.Process()) - cpu
    if (got := _counts(db)[0]) != n + 1:
        raise RuntimeError(f"{got} dispatches stored for {n + 1} sent")
    return n / elapsed, cpu / n


def _cpu(proc: psutil.Process) -> float:
    """CPU seconds (user + system) of ``proc`` and its threads (the store's reader)."""
    t = proc.cpu_times()
    return float(t.user + t.system)


async def _steady(count: int, send: Callable[[], Awaitable[None]]) -> None:
    """``count`` calls of ``send``, each started on schedule at `RATE` per second."""
    async with anyio.create_task_group() as tg:
        start = time.perf_counter()
        for i in range(count):
            if (wait := start + i / RATE - time.perf_counter()) > 0:
                await anyio.sleep(wait)
            tg.start_soon(send)


async def http_pickup(ctx: BenchContext, duration: float) -> list[float]:
    count = int(RATE * duration)
    async with Daemon(ctx, "pickup") as d:
        clients = [d.client() for _ in range(CLIENTS)]
        pool = itertools.cycle(clients)
        try:

            async def send() -> None:
                body = {"job": NOOP, "payload": {"t": time.time()}}
                (await next(pool).post("/api/v1/dispatches", json=body)).raise_for_status()

            await _steady(WARMUP, send)
            await _wait_runs(d.db, WARMUP, d.stall)
            await _steady(count, send)
            await _wait_runs(d.db, WARMUP + count, d.stall)
        finally:
            for c in clients:
                await c.aclose()
        samples = _latencies(d.db, WARMUP)
    if len(samples) != count:
        raise RuntimeError(f"{len(samples)} runs for {count} dispatches")
    return samples


async def inproc_pickup(ctx: BenchContext, duration: float) -> list[float]:
    count = int(RATE * duration)
    db = ctx.path(SCENARIO, "inproc_pickup.db")
    async with open_runtime(db) as rt:

        async def send() -> None:
            await rt.enqueue(NOOP, {"t": time.time()})

        await _steady(WARMUP, send)
        await _wait_runs(db, WARMUP, ctx.stall_timeout)
        await _steady(count, send)
        await _wait_runs(db, WARMUP + count, ctx.stall_timeout)
    samples = _latencies(db, WARMUP)
    if len(samples) != count:
        raise RuntimeError(f"{len(samples)} runs for {count} dispatches")
    return samples


async def run(ctx: BenchContext) -> list[Result]:
    n = QUICK_N if ctx.quick else N
    duration = QUICK_DURATION if ctx.quick else DURATION
    out: list[Result] = []
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        for workers in (1, CLIENTS):
            base, cpu_base = f"inproc_enqueue.c{workers}", f"inproc_cpu.c{workers}"
            rate, cpu = await inproc_enqueue(ctx, n, workers)
            out.append(result(SCENARIO, base, rate, "jobs/s", n, None, "Runtime.enqueue"))
            out.append(result(SCENARIO, cpu_base, cpu * 1e6, "µs", n, None,
                              "process CPU per Runtime.enqueue"))  # fmt: skip
            rate, cpu = await http_enqueue(ctx, n, workers)
            note = f"POST /api/v1/dispatches, {workers} keep-alive client(s)"
            out.append(result(SCENARIO, f"http_enqueue.c{workers}", rate, "jobs/s", n,
                              f"{SCENARIO}:{base}", note))  # fmt: skip
            out.append(result(SCENARIO, f"http_cpu.c{workers}", cpu * 1e6, "µs", n,
                              f"{SCENARIO}:{cpu_base}", "daemon CPU per POST"))  # fmt: skip
        inproc = percentiles(await inproc_pickup(ctx, duration))
        http = percentiles(await http_pickup(ctx, duration))
    count = int(RATE * duration)
    note = f"enqueue -> run start at {RATE:.0f}/s for {duration:g} s"
    for name in ("p50", "p99"):
        ref = f"inproc_pickup_{name}"
        out.append(result(SCENARIO, ref, getattr(inproc, name) * 1000, "ms", count, None, note))
        out.append(result(SCENARIO, f"http_pickup_{name}", getattr(http, name) * 1000, "ms",
                          count, f"{SCENARIO}:{ref}", note))  # fmt: skip
    return out
