"""``postgres``: shepherd on PostgreSQL beside pgqueuer and procrastinate, on the same
server, in the same run (``python -m bench --only postgres``; ~2-3 min at the default
size).

The server is ``SHEPHERD_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/
postgres``); the scenario creates a scratch database there and drops it at the end
(skipped when no server answers). Each measurement gets a fresh schema, so every
system starts from empty tables. The size is ``n = min(--sizes)``, at most 5,000 (a
PostgreSQL round trip is ~10x an SQLite commit: the larger sizes would take many
minutes). Every job is a no-op; each node (worker) is a process of its own
(`bench.pg_worker`), which counts the jobs its bodies ran. Per system:

- ``enqueue_single.<system>``: one job per committed call from one producer
  connection (``min(n, 2,000)`` jobs), no worker running;
- ``enqueue_batch.<system>``: ``n`` jobs in batches of 1,000, one call each.

Per system and node count ``w`` (1, 2, 3 worker processes on the one database), the
nodes started and idle:

- ``drain.<system>.w<w>``: a backlog of ``n`` jobs committed in one transaction →
  the n-th job run (from the commit's return);
- ``e2e.<system>.w<w>``: the producer enqueueing ``n`` jobs in batches of 1,000 flat
  out: first enqueue → n-th job run;
- ``pickup_{p50,p99}.<system>.w<w>``: 200 jobs/s for 3 s (1 s with ``--quick``), one
  committed call each: ``time.time()`` just before the call → the body's first line.

shepherd's and procrastinate's figures are ratios to pgqueuer's same figure (the goal
for shepherd: ``drain`` ≥ 3x). Every phase checks that each job ran exactly once (the
bodies' counts); a dead node, no progress for ``ctx.stall_timeout`` seconds or a run
too many ends the scenario with an error.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import anyio
import asyncpg

from bench.context import BenchContext, ScenarioSkipped
from bench.peers.pg_peers import PgSystem
from bench.pg_worker import SYSTEMS
from bench.report import Result, percentiles
from bench.shepherd_e2e import _CODE_ROOT, child_env
from bench.shepherd_pg import CONCURRENCY

SCENARIO = "postgres"
SERVER = os.environ.get("SHEPHERD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ORDER = ("pgqueuer", "procrastinate", "shepherd")  # the reference first
NODES = (1, 2, 3)
MAX_N = 5_000
SINGLE_MAX = 2_000
BATCH = 1_000
PICKUP_RATE = 200.0
_schemas = iter(range(1, 10**6))


def _url(database: str, schema: str | None = None) -> str:
    base = SERVER.rpartition("/")[0]
    return f"{base}/{database}" + (f"?search_path={schema}" if schema else "")


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A database of this run's own on the server (dropped at the end)."""
    name = f"shepherd_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = await asyncpg.connect(SERVER, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise ScenarioSkipped(f"no PostgreSQL server at {SERVER}: {exc}") from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        print(f"postgres: scratch database {name} on {SERVER}", file=sys.stderr, flush=True)
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def fresh_schema(database: str, system: PgSystem) -> str:
    """The URL of a new empty schema holding ``system``'s tables."""
    schema = f"{system.name}_{next(_schemas)}"
    conn = await asyncpg.connect(_url(database))
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    url = _url(database, schema)
    await system.install(url)
    return url


class Nodes:
    """``k`` worker processes of ``system`` on ``url`` and what their lines report."""

    def __init__(self, system: str, url: str, k: int, log: Path) -> None:
        cmd = [sys.executable, "-m", "bench.pg_worker", system, url]
        cmd += ["--concurrency", str(CONCURRENCY)]
        self._log = log.open("ab")
        self._lock = threading.Lock()
        self.ready: list[float] = []
        self.counts = [0] * k
        self.lasts = [0.0] * k
        self.lat: list[float] = []
        self.procs = [
            subprocess.Popen(
                cmd, cwd=_CODE_ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=self._log
            )
            for _ in range(k)
        ]
        self._readers = [
            threading.Thread(target=self._read, args=(i, p.stdout), daemon=True)
            for i, p in enumerate(self.procs)
        ]
        for t in self._readers:
            t.start()

    def _read(self, i: int, stream: IO[bytes] | None) -> None:
        assert stream is not None
        for line in stream:
            msg = json.loads(line)
            with self._lock:
                if "ready" in msg:
                    self.ready.append(float(msg["ready"]))
                else:
                    self.counts[i] = int(msg["count"])
                    self.lasts[i] = float(msg["last"])
                    self.lat.extend(msg["lat"])

    def total(self) -> int:
        with self._lock:
            return sum(self.counts)

    def take_latencies(self) -> list[float]:
        with self._lock:
            lat, self.lat = self.lat, []
        return lat

    def _check_alive(self, what: str) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a worker exited ({p.returncode}) {what}; see {self._log.name}")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        with anyio.fail_after(timeout):
            while len(self.ready) < len(self.procs):
                self._check_alive("while starting")
                await anyio.sleep(0.01)

    async def wait_count(self, target: int, stall: float) -> float:
        """Until the bodies ran ``target`` jobs in all: the monotonic time of the last."""
        seen, at = -1, time.monotonic()
        while (total := self.total()) < target:
            self._check_alive(f"at {total}/{target} jobs")
            now = time.monotonic()
            if total != seen:
                seen, at = total, now
            elif now - at > stall:
                raise TimeoutError(f"no job ran for {stall:g}s ({total}/{target})")
            await anyio.sleep(0.005)
        if total > target:
            raise RuntimeError(f"{total} runs for {target} jobs: a job ran twice")
        with self._lock:
            return max(self.lasts)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in self._readers:
            t.join(timeout=5)
        self._log.close()


def _result(metric: str, system: str, value: float, unit: str, n: int, note: str) -> Result:
    ref = None if system == "pgqueuer" else f"{SCENARIO}:{metric.replace(system, 'pgqueuer')}"
    return Result(
        scenario=SCENARIO, metric=metric, value=value, unit=unit, n=n, ratio_to=ref, note=note
    )


async def enqueue_figures(database: str, system: PgSystem, n: int) -> list[Result]:
    producer = await system.producer(await fresh_schema(database, system))
    jobs = min(n, system.max_jobs or n)
    try:
        m = min(jobs, SINGLE_MAX)
        start = time.perf_counter()
        for _ in range(m):
            await producer.enqueue_one(None)
        single = m / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(0, jobs, BATCH):
            await producer.enqueue_batch([None] * min(BATCH, jobs - i))
        batch = jobs / (time.perf_counter() - start)
    finally:
        await producer.close()
    name = system.name
    return [
        _result(f"enqueue_single.{name}", name, single, "jobs/s", n, f"{m:,} one per commit"),
        _result(f"enqueue_batch.{name}", name, batch, "jobs/s", n, f"{jobs:,} in {BATCH:,}s"),
    ]


async def node_figures(
    ctx: BenchContext, database: str, system: PgSystem, n: int, k: int
) -> list[Result]:
    url = await fresh_schema(database, system)
    producer = await system.producer(url)
    jobs = min(n, system.max_jobs or n)  # the figures keep the run's n: ratios pair them
    log = ctx.path(SCENARIO, f"{system.name}_w{k}.log")
    nodes = Nodes(system.name, url, k, log)
    stall = ctx.stall_timeout
    try:
        await nodes.wait_ready()
        await anyio.sleep(0.3)  # every node's LISTEN and first poll done
        await producer.enqueue_batch([None] * jobs)  # the backlog: one commit
        start = time.monotonic()
        drain = jobs / (await nodes.wait_count(jobs, stall) - start)
        start = time.monotonic()
        for i in range(0, jobs, BATCH):
            await producer.enqueue_batch([None] * min(BATCH, jobs - i))
        e2e = jobs / (await nodes.wait_count(2 * jobs, stall) - start)
        nodes.take_latencies()
        samples = int(PICKUP_RATE * (1.0 if ctx.quick else 3.0))
        begin = time.monotonic()
        for i in range(samples):
            delay = begin + i / PICKUP_RATE - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            await producer.enqueue_one(time.time())
        await nodes.wait_count(2 * jobs + samples, stall)
        lat = nodes.take_latencies()
        if len(lat) != samples:
            raise RuntimeError(f"{len(lat)} pickup samples for {samples} jobs")
    finally:
        nodes.stop()
        await producer.close()
    p = percentiles(lat)
    name, tag = system.name, f"{system.name}.w{k}"
    note = f"{k} node(s): {system.note}" + (f"; {jobs:,} jobs" if jobs != n else "")
    pick = f"{samples} jobs at {PICKUP_RATE:g}/s; {k} node(s)"
    return [
        _result(f"drain.{tag}", name, drain, "jobs/s", n, note),
        _result(f"e2e.{tag}", name, e2e, "jobs/s", n, f"batches of {BATCH:,}; {note}"),
        _result(f"pickup_p50.{tag}", name, p.p50 * 1000, "ms", n, pick),
        _result(f"pickup_p99.{tag}", name, p.p99 * 1000, "ms", n, pick),
    ]


def _show(results: list[Result]) -> None:
    for r in results:
        print(f"  {r.metric}: {r.value:,.1f} {r.unit}", file=sys.stderr, flush=True)


async def run(ctx: BenchContext) -> list[Result]:
    n = min(min(ctx.sizes), MAX_N)
    out: list[Result] = []
    async with scratch_database() as database:
        for name in ORDER:
            system = SYSTEMS[name]
            got = await enqueue_figures(database, system, n)
            for k in NODES:
                got += await node_figures(ctx, database, system, n, k)
            _show(got)
            out += got
    return out
