"""``chain``: parent-finish → child-start latency of workflow chains, beside the plain
dispatch path (enqueue → start) measured in the same run (README "Chains").

One embedded runtime (concurrency 64, synchronous=NORMAL), python no-op targets that
stamp ``time.perf_counter()``: a parent stamps as its last act (keyed by its run id),
a child as its first act and subtracts its parent's stamp (found through
``ctx.parent_run_id``). The latency so covers the run's report, the one transaction
that finalizes the parent and inserts the child, admission, the claim and the start.

- ``plain_{p50,p99}``: one ``rt.enqueue`` at a time, stamp before the call → start;
- ``plain25_{p50,p99}``: ``rt.enqueue_many`` of 25 at a time → each start (the plain
  path's shape of a fan-out, for comparison);
- ``linear_{p50,p99}``: a chain of 11 jobs (depth 10, the deepest allowed) run 100
  times one after another: 1,000 parent → child steps;
- ``fanout_{p50,p99}``: a root with 25 children (the default cap), run 40 times:
  1,000 child starts, each against its parent's finish.

The chain figures are also given as ratios to the plain ones. ``--quick``: 100 steps.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result, percentiles
from bench.shepherd_bench import open_runtime, result, runtime_log
from shepherd.actors.executors.base import RunContext
from shepherd.runtime.app import Runtime
from shepherd.store.models import EnqueueRequest, JobSpec

SCENARIO = "chain"
STEPS = 1_000
QUICK_STEPS = 100
DEPTH = 10
FANOUT = 25


class Stamps:
    """Finish stamps of parent runs and the latencies their children saw."""

    def __init__(self) -> None:
        self.ended: dict[int, float] = {}
        self.plain: list[float] = []
        self.chain: list[float] = []
        self.done = 0

    async def plain_target(self, ctx: RunContext) -> None:
        self.plain.append(time.perf_counter() - ctx.payload["t"])
        self.done += 1

    async def step(self, ctx: RunContext) -> str:
        now = time.perf_counter()
        if ctx.parent_run_id is not None:
            self.chain.append(now - self.ended[ctx.parent_run_id])
        self.done += 1
        self.ended[ctx.run_id] = time.perf_counter()
        return "ok"


async def _until(stamps: Stamps, count: int, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while stamps.done < count:
            await anyio.sleep(0.0005)


async def _plain(rt: Runtime, stamps: Stamps, n: int, timeout: float) -> list[float]:
    for _ in range(n):
        want = stamps.done + 1
        await rt.enqueue("plain", {"t": time.perf_counter()})
        await _until(stamps, want, timeout)
    return list(stamps.plain)


async def _plain25(rt: Runtime, stamps: Stamps, n: int, timeout: float) -> list[float]:
    stamps.plain.clear()
    for _ in range(max(1, n // FANOUT)):
        want = stamps.done + FANOUT
        t = time.perf_counter()
        await rt.enqueue_many([EnqueueRequest(job="plain", payload={"t": t})] * FANOUT)
        await _until(stamps, want, timeout)
    return list(stamps.plain)


async def _chain(
    rt: Runtime, stamps: Stamps, root: str, runs: int, per_run: int, timeout: float
) -> list[float]:
    stamps.chain.clear()
    for _ in range(runs):
        want = stamps.done + per_run + 1
        await rt.enqueue(root)
        await _until(stamps, want, timeout)
    stamps.ended.clear()
    return list(stamps.chain)


def _jobs() -> tuple[JobSpec, ...]:
    jobs = [JobSpec(name="plain", target="plain"), JobSpec(name="l0", target="step")]
    for i in range(1, DEPTH + 1):
        jobs.append(JobSpec(name=f"l{i}", target="step", parent=f"l{i - 1}", trigger_on="success"))
    jobs.append(JobSpec(name="fan", target="step", max_fanout=FANOUT))
    for i in range(FANOUT):
        jobs.append(JobSpec(name=f"f{i}", target="step", parent="fan", trigger_on="complete"))
    return tuple(jobs)


def _figures(kind: str, samples: list[float], note: str, n: int) -> list[Result]:
    pct = percentiles(samples)
    out = []
    for name, value in (("p50", pct.p50), ("p99", pct.p99)):
        ratio = None if kind.startswith("plain") else f"{SCENARIO}:plain_{name}"
        out.append(result(SCENARIO, f"{kind}_{name}", value * 1000, "ms", n, ratio, note))
    return out


async def run(ctx: BenchContext) -> list[Result]:
    steps = QUICK_STEPS if ctx.quick else STEPS
    stamps = Stamps()
    targets: dict[str, Any] = {"plain": stamps.plain_target, "step": stamps.step}
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        db = ctx.path(SCENARIO, "chain.db")
        async with open_runtime(db, targets=targets, jobs=_jobs()) as rt:
            await _plain(rt, stamps, 50, ctx.stall_timeout)  # warm-up
            stamps.plain.clear()
            plain = await _plain(rt, stamps, steps, ctx.stall_timeout)
            plain25 = await _plain25(rt, stamps, steps, ctx.stall_timeout)
            linear = await _chain(rt, stamps, "l0", steps // DEPTH, DEPTH, ctx.stall_timeout)
            fanout = await _chain(rt, stamps, "fan", steps // FANOUT, FANOUT, ctx.stall_timeout)
    return (
        _figures("plain", plain, "one enqueue at a time, enqueue -> start", steps)
        + _figures("plain25", plain25, f"enqueue_many of {FANOUT} -> each start", len(plain25))
        + _figures("linear", linear, f"depth-{DEPTH} chain, parent end -> child start", steps)
        + _figures("fanout", fanout, f"{FANOUT} children per parent run", len(fanout))
    )
