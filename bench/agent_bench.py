"""Agent-turn dispatch overhead against a gateway stand-in that answers instantly.

What is timed, at concurrency c = 1, 10, 100 (c closed-loop callers each):

- ``gateway_raw_rps.c<c>``: the ceiling. httpx straight at the stand-in, the same
  streamed chat-completions request (body and headers) an agent turn sends, parsed
  to the end of the SSE stream; requests per second and per-request latency.
- ``turns_per_s.c<c>``: the same turns as shepherd runs them: each caller does
  ``await rt.wait(await rt.enqueue("turn"))`` (durable enqueue, admission, claim, run
  actor, prompt build with the inbox query, the HTTP turn, sentinel classification,
  finalization, outcome event → router). ``ratio`` is to the raw rate.
- ``added_latency_p50.c<c>`` / ``_p99``: shepherd's per-turn latency minus the raw
  request's, in ms (what dispatching costs a caller who waits for the turn).
- ``burst_turns_per_s.c<c>``: n turns enqueued at once (``enqueue_many``) with
  ``concurrency = c``, first enqueue → last outcome: the dispatcher's batched path.

The stand-in (``tests/gateway_standin.py``, uvicorn) runs in its own process so it
does not share the GIL with the runtime; everything else is this process. Real time,
real SQLite file (WAL, synchronous NORMAL) under the bench workdir.

Run alone: ``python -m bench.agent_bench [--n 2000] [--quick]``. Register in
``bench/scenarios.py`` with::

    from bench import agent_bench
    register("agent", description="agent-turn overhead vs the raw gateway rate")(
        agent_bench.run)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.context import BenchContext
from bench.report import Result, percentiles
from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.runtime import Config, EnqueueRequest, JobSpec, RetryPolicy, Runtime

SCENARIO = "agent"
CONCURRENCY = (1, 10, 100)
REPO = Path(__file__).resolve().parent.parent

_STANDIN = """
import sys
from tests.gateway_standin import Mode, StandIn
gw = StandIn(Mode(reply="HEARTBEAT_OK"))
gw.start()
print(gw.port, flush=True)
sys.stdin.read()
gw.stop()
"""


@contextmanager
def standin_process() -> Iterator[str]:
    """The gateway stand-in in a child process; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _STANDIN],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"gateway stand-in did not start: {line!r}")
        yield f"http://127.0.0.1:{line}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _callers(
    c: int, n: int, turn: Callable[[], Awaitable[None]]
) -> tuple[float, list[float]]:
    """``c`` closed-loop callers doing ``n`` turns in all: (elapsed s, latencies s)."""
    latencies: list[float] = []
    per = [n // c + (1 if i < n % c else 0) for i in range(c)]

    async def caller(k: int) -> None:
        for _ in range(k):
            t = time.perf_counter()
            await turn()
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in per:
            tg.start_soon(caller, k)
    return time.perf_counter() - started, latencies


def _body(job_id: int) -> dict[str, Any]:
    prompt = f"[scheduler:{job_id} turn]\n\nSay HEARTBEAT_OK."
    return {
        "model": "openclaw:main",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }


async def raw_rate(url: str, c: int, n: int) -> tuple[float, list[float]]:
    headers = {
        "x-openclaw-agent-id": "main",
        "x-openclaw-session-key": "scheduler:1",
        "accept": "text/event-stream, application/json",
    }
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def turn() -> None:
            async with client.stream(
                "POST", url + "/v1/chat/completions", json=_body(1), headers=headers
            ) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line == "data: [DONE]":
                        break

        await _callers(c, min(n, 50), turn)  # warm the pool
        return await _callers(c, n, turn)


def _config(db: Path, url: str, c: int) -> Config:
    return Config(
        database=str(db), concurrency=max(c, 1), shutdown_grace=5.0, gateway=GatewayConfig(url=url)
    )  # type: ignore[arg-type]


_JOB = JobSpec(
    name="turn",
    executor="agent",
    target="main",
    payload={"message": "Say HEARTBEAT_OK."},
    retry=RetryPolicy(max_attempts=1),
)


async def shepherd_closed(db: Path, url: str, c: int, n: int) -> tuple[float, list[float]]:
    async with Runtime.open(_config(db, url, c)) as rt:
        await rt.add_job(_JOB)

        async def turn() -> None:
            d = await rt.wait(await rt.enqueue("turn"))
            if d.outcome != "ok":
                raise RuntimeError(f"turn ended {d.outcome}: {d.last_error}")

        await _callers(c, min(n, 50), turn)  # warm up: connections, caches
        return await _callers(c, n, turn)


async def shepherd_burst(db: Path, url: str, c: int, n: int) -> float:
    async with Runtime.open(_config(db, url, c)) as rt:
        await rt.add_job(_JOB)
        started = time.perf_counter()
        ids = await rt.enqueue_many([EnqueueRequest(job="turn") for _ in range(n)])
        for dispatch_id in ids:
            d = await rt.wait(dispatch_id)
            if d.outcome != "ok":
                raise RuntimeError(f"turn ended {d.outcome}: {d.last_error}")
        return n / (time.perf_counter() - started)


async def measure(workdir: Path, n: int, progress: Callable[[str], None]) -> list[Result]:
    results: list[Result] = []
    with standin_process() as url:
        for c in CONCURRENCY:
            progress(f"agent: c={c}, raw gateway")
            raw_s, raw_lat = await raw_rate(url, c, n)
            progress(f"agent: c={c}, shepherd closed loop")
            db = workdir / f"agent_closed_c{c}.db"
            sh_s, sh_lat = await shepherd_closed(db, url, c, n)
            progress(f"agent: c={c}, shepherd burst")
            burst = await shepherd_burst(workdir / f"agent_burst_c{c}.db", url, c, n)
            raw_p, sh_p = percentiles(raw_lat), percentiles(sh_lat)
            raw_metric = f"gateway_raw_rps.c{c}"
            results += [
                Result(scenario=SCENARIO, metric=raw_metric, value=n / raw_s, unit="req/s", n=n,
                       note=f"p50 {raw_p.p50 * 1e3:.2f} ms, p99 {raw_p.p99 * 1e3:.2f} ms"),
                Result(scenario=SCENARIO, metric=f"turns_per_s.c{c}", value=n / sh_s,
                       unit="turns/s", n=n, ratio_to=f"{SCENARIO}:{raw_metric}",
                       note=f"p50 {sh_p.p50 * 1e3:.2f} ms, p99 {sh_p.p99 * 1e3:.2f} ms"),
                Result(scenario=SCENARIO, metric=f"added_latency_p50.c{c}",
                       value=(sh_p.p50 - raw_p.p50) * 1e3, unit="ms", n=n),
                Result(scenario=SCENARIO, metric=f"added_latency_p99.c{c}",
                       value=(sh_p.p99 - raw_p.p99) * 1e3, unit="ms", n=n),
                Result(scenario=SCENARIO, metric=f"burst_turns_per_s.c{c}", value=burst,
                       unit="turns/s", n=n, ratio_to=f"{SCENARIO}:{raw_metric}"),
            ]  # fmt: skip
    return results


async def run(ctx: BenchContext) -> list[Result]:
    n = 200 if ctx.quick else 2000
    workdir = Path(ctx.workdir) / SCENARIO
    workdir.mkdir(parents=True, exist_ok=True)
    return await measure(workdir, n, lambda text: print(text, file=sys.stderr))


def main() -> None:
    from bench.report import apply_ratios

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="turns per measurement")
    args = parser.parse_args()
    base = REPO / "bench" / "results"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        results = anyio.run(
            measure, Path(tmp), args.n, lambda text: print(text, file=sys.stderr),
            backend="asyncio", backend_options={"use_uvloop": True},
        )  # fmt: skip
    print(f"| metric | value | unit | ratio | note |   (n = {args.n}, pid {os.getpid()})")
    print("|---|---|---|---|---|")
    for r in apply_ratios(results):
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        print(f"| {r.metric} | {r.value:,.2f} | {r.unit} | {ratio} | {r.note} |")


if __name__ == "__main__":
    main()
