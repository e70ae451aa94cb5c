"""``events``: what observability costs the dispatch path, and how fast the event
stream delivers, in the same run.

An embedded runtime with ``[http]`` on loopback (the metrics' event listener is on in
every case) drains N no-op python jobs (20,000; 4,000 with ``--quick``), enqueued in
batches of 1,000; the figure is first enqueue -> last final outcome, in runs/s:

- ``events_tput.none``: nobody subscribed to the stream (the baseline);
- ``events_tput.sse``: one SSE client (another process, httpx) reading every kind
  (dispatch, run_started, outcome) of ``GET /api/v1/events``; ratio to ``.none``;
- ``events_tput.nats``: ``[http.nats]`` publishing every event to the NATS server at
  127.0.0.1:4222 (absent: not measured); ratio to ``.none``;
- ``events_tput.nohttp``: no HTTP at all, for reference; ratio to ``.none``.

``events_cpu.*`` is the same runs' CPU time of the runtime's process (every thread:
SQLite's too) per run: on a shared machine the steadier figure of the cost.

The variants are run in rounds, interleaved, and each figure is the best round (the
highest rate, the lowest CPU time: the machine is shared, the best is the least
disturbed). Then
``sse_latency_{p50,p99}``: jobs enqueued one at a time at `RATE` per second for
`DURATION` s with the SSE client connected (kind=outcome); per dispatch, the time its
``OutcomeEvent`` was published (right after its commit; a listener stamps
``time.time()``) to the time the client process parsed the event (``time.time()``
there: one clock, two processes). Each throughput run checks that every dispatch
ended ``done``; the SSE client checks it saw every outcome (the stream's drop count is
reported in the note).
"""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result, percentiles
from bench.shepherd_bench import NOOP, noop, result, runtime_log
from shepherd import Config, JobSpec, Runtime
from shepherd.actors.messages import Event, OutcomeEvent
from shepherd.runtime.http.config import HttpConfig, NatsConfig, TokenConfig
from shepherd.runtime.http.events import hub_of
from shepherd.store.models import EnqueueRequest

SCENARIO = "events"
TOKEN = "bench-events-token"
N, QUICK_N = 20_000, 4_000
BATCH = 1_000
ROUNDS, QUICK_ROUNDS = 5, 1
RATE, DURATION, QUICK_DURATION = 200.0, 5.0, 2.0


def _nats_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1.0):
            return True
    except OSError:
        return False


@asynccontextmanager
async def _runtime(db: Path, variant: str) -> AsyncIterator[Runtime]:
    http = HttpConfig()
    if variant != "nohttp":
        nats = NatsConfig(prefix=f"bench{uuid.uuid4().hex[:6]}") if variant == "nats" else None
        http = HttpConfig(
            listen="127.0.0.1:0",
            rate_limit=0,
            tokens=[TokenConfig(name="bench", scope="read", token=TOKEN)],
            nats=nats,
        )
    cfg = Config(database=str(db), concurrency=64, synchronous="NORMAL", http=http)
    async with Runtime.open(cfg, targets={NOOP: noop}) as rt:
        await rt.add_job(JobSpec(name=NOOP, target=NOOP))
        if variant == "nats":
            nats_actor = rt._actors["nats"]
            with anyio.fail_after(10):
                while not nats_actor.statistics()["connected"]:
                    await anyio.sleep(0.01)
        yield rt


class Finals:
    """An EventHub listener counting final outcomes (the same in every variant)."""

    def __init__(self, n: int) -> None:
        self.n, self.done, self.bad = n, 0, 0
        self.all = anyio.Event()
        self.stamps: dict[int, float] = {}
        self.stamp = False

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, OutcomeEvent) and ev.final:
            if self.stamp:
                self.stamps[ev.dispatch_id] = time.time()
            self.done += 1
            self.bad += ev.status != "done"
            if self.done >= self.n:
                self.all.set()


class Client:
    """The SSE client: this module run as a script in another process."""

    def __init__(self, rt: Runtime, kinds: str, n: int) -> None:
        addr = rt.http_address
        assert addr is not None
        self.cmd = [sys.executable, "-m", "bench.events_bench", f"http://{addr[0]}:{addr[1]}",
                    kinds, str(n)]  # fmt: skip
        self._buf = b""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Client]:
        async with await anyio.open_process(self.cmd, stderr=None) as proc:
            self.proc = proc
            try:
                if (await self._line()).strip() != "ready":  # connected and listening
                    raise RuntimeError("the SSE client did not start")
                yield self
            finally:
                if proc.returncode is None:
                    proc.kill()

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        while b"\n" not in self._buf:
            self._buf += await self.proc.stdout.receive()
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    async def results(self, timeout: float) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            return json.loads(await self._line())  # type: ignore[no-any-return]


async def _throughput(ctx: BenchContext, variant: str, n: int, r: int) -> tuple[float, float, str]:
    db = ctx.path(SCENARIO, f"{variant}-{r}.db")
    async with _runtime(db, variant) as rt:
        finals = Finals(n)
        stop = rt.events.listen(finals)
        client = Client(rt, "", n) if variant == "sse" else None
        async with AsyncExitStack() as stack:
            if client is not None:
                await stack.enter_async_context(client.running())
            stack.callback(stop)
            reqs = [EnqueueRequest(job=NOOP) for _ in range(BATCH)]
            began, cpu = time.perf_counter(), time.process_time()
            for _ in range(n // BATCH):
                await rt.enqueue_many(reqs)
            with anyio.fail_after(ctx.stall_timeout * 4):
                await finals.all.wait()
            elapsed = time.perf_counter() - began
            cpu = time.process_time() - cpu
            note = ""
            if client is not None:
                hub = hub_of(rt.asgi_app)
                assert hub is not None
                hub.close()  # the stream ends once the client read what is buffered
                seen = await client.results(ctx.stall_timeout)
                dropped = hub.statistics()["dropped"]
                note = f"client saw {seen['outcomes']} outcomes, stream dropped {dropped}"
                if seen["outcomes"] + dropped < n:
                    raise RuntimeError(f"SSE client missed outcomes: {seen}")
            if variant == "nats":
                st = rt._actors["nats"].statistics()
                note = f"published {st['published']}, dropped {st['offline_dropped']}"
        if finals.bad:
            raise RuntimeError(f"{finals.bad} dispatches did not end done")
    return n / elapsed, cpu / n * 1e6, note


async def _latency(ctx: BenchContext) -> list[float]:
    db = ctx.path(SCENARIO, "latency.db")
    duration = QUICK_DURATION if ctx.quick else DURATION
    count = int(RATE * duration)
    async with _runtime(db, "none") as rt:
        finals = Finals(count)
        finals.stamp = True
        stop = rt.events.listen(finals)
        try:
            async with Client(rt, "outcome", count).running() as client:
                began = time.perf_counter()
                for i in range(count):
                    due = began + i / RATE
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await anyio.sleep(delay)
                    await rt.enqueue(NOOP)
                with anyio.fail_after(ctx.stall_timeout):
                    await finals.all.wait()
                hub = hub_of(rt.asgi_app)
                assert hub is not None
                hub.close()
                seen = await client.results(ctx.stall_timeout)
        finally:
            stop()
    got: dict[str, float] = seen["received"]
    return [got[str(d)] - t for d, t in finals.stamps.items() if str(d) in got]


async def run(ctx: BenchContext) -> list[Result]:
    n = QUICK_N if ctx.quick else N
    rounds = QUICK_ROUNDS if ctx.quick else ROUNDS
    variants = ["none", "sse", *(["nats"] if _nats_up() else []), "nohttp"]
    best: dict[str, tuple[float, float, str]] = {}
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        for r in range(rounds):
            for v in variants:
                rate, cpu, note = await _throughput(ctx, v, n, r)
                was = best.get(v, (0.0, float("inf"), ""))
                best[v] = (max(rate, was[0]), min(cpu, was[1]), note or was[2])
        lat = await _latency(ctx)
    out = []
    for v in variants:
        rate, cpu, note = best[v]
        ratio_to = None if v == "none" else f"{SCENARIO}:events_tput.none"
        out.append(result(SCENARIO, f"events_tput.{v}", rate, "runs/s", n, ratio_to, note))
        cpu_to = None if v == "none" else f"{SCENARIO}:events_cpu.none"
        note = "the runtime process's CPU time (all threads) per run, same round"
        out.append(result(SCENARIO, f"events_cpu.{v}", cpu, "µs/run", n, cpu_to, note))
    if "nats" not in best:
        out.append(result(SCENARIO, "events_tput.nats", 0.0, "runs/s", n, None,
                          "not measured: no NATS server at 127.0.0.1:4222"))  # fmt: skip
    p = percentiles(lat)
    note = f"{len(lat)} outcomes at {RATE:g}/s, published -> parsed by the client"
    out.append(result(SCENARIO, "sse_latency_p50", p.p50 * 1000, "ms", None, None, note))
    out.append(result(SCENARIO, "sse_latency_p99", p.p99 * 1000, "ms", None, None, note))
    return out


def _client(url: str, kinds: str, n: int) -> None:
    """Read the stream until ``n`` outcomes; print the count and each receive time."""
    import httpx

    received: dict[str, float] = {}
    outcomes = events = 0
    params = {"kind": kinds} if kinds else {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=None) as c,
        c.stream("GET", "/api/v1/events", params=params) as resp,
    ):
        event = ""
        for line in resp.iter_lines():
            if line == ": connected":
                print("ready", flush=True)
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events += 1
                if event == "outcome":
                    now = time.time()
                    data = json.loads(line[6:])
                    received[str(data["dispatch_id"])] = now
                    outcomes += 1
                    if outcomes >= n:
                        break
    print(json.dumps({"outcomes": outcomes, "events": events, "received": received}), flush=True)


if __name__ == "__main__":
    _client(sys.argv[1], sys.argv[2], int(sys.argv[3]))
