"""Approval gates: the cost per dispatch of unrelated (ungated) work with 10,000
approvals pending, beside the same work with none pending, in the same run (README
"Approvals"; goal: within 10 %).

One runtime, two jobs: ``work`` (ungated, a no-op python target) and ``gated`` (an
approval gate, ``max_pending`` above the backlog, requests to a callback sink that
drops them). Per size ``n``: ``n`` ungated dispatches in ``enqueue_many`` batches of
1,000, enqueue → last done, µs per dispatch — first with no approval pending, then
after 10,000 gated dispatches wait (their request deliveries sent first, so the
router is idle), then once more with none pending (the pending ones rejected), so a
drift of the machine shows. Each insert batch of the ungated work pays the gate's one
probe of ``jobs_gated`` and finds no gated row.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result
from shepherd.runtime import (
    ApprovalPolicy,
    Config,
    Delivery,
    EnqueueRequest,
    JobSpec,
    RunContext,
    Runtime,
)

SCENARIO = "approval"
PENDING = 10_000
BATCH = 1_000


async def _noop(ctx: RunContext) -> None:
    return None


async def _drop(d: Delivery) -> None:
    return None


async def _work(rt: Runtime, n: int) -> float:
    """µs per dispatch: ``n`` ungated dispatches, first enqueue → last done."""
    began = time.perf_counter()
    ids: list[int] = []
    for lo in range(0, n, BATCH):
        reqs = [EnqueueRequest(job="work") for _ in range(min(BATCH, n - lo))]
        ids += await rt.enqueue_many(reqs)
    for dispatch_id in ids[-1:]:
        await rt.wait(dispatch_id, timeout=600)
    while (await rt.stats())["dispatches"]["queued"] or (await rt.stats())["dispatches"]["running"]:
        await anyio.sleep(0.005)
    return (time.perf_counter() - began) / n * 1e6


async def _pend(rt: Runtime, count: int) -> None:
    for lo in range(0, count, BATCH):
        await rt.enqueue_many([EnqueueRequest(job="gated") for _ in range(min(BATCH, count - lo))])
    while await rt.deliveries(status="pending", limit=1):
        await anyio.sleep(0.01)


async def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    pending = 1_000 if ctx.quick else PENDING
    for n in ctx.sizes:
        db = ctx.path("approval", f"bench-{n}.db")
        cfg = Config(database=str(db), concurrency=64)
        async with Runtime.open(cfg, targets={"noop": _noop}) as rt:
            rt.register_delivery_sink("approvals", _drop)
            await rt.add_job(JobSpec(name="work", target="noop"))
            policy = ApprovalPolicy(max_pending=pending * 2)
            options: dict[str, Any] = {"delivery": "none", "delivery_channel": "approvals"}
            await rt.add_job(JobSpec(name="gated", target="noop", options=options, approval=policy))
            await _work(rt, min(n, 1_000))  # warm-up
            none = await _work(rt, n)
            await _pend(rt, pending)
            assert (await rt.stats())["approvals_pending"] == pending
            with_pending = await _work(rt, n)
            for a in await rt.approvals(status="pending", limit=pending):
                await rt.reject(a.id, "bench")
            again = await _work(rt, n)
        note = f"{pending:,} approvals pending (other job)"
        out += [
            Result(scenario=SCENARIO, metric="us_per_dispatch_none_pending", value=none,
                   unit="µs", n=n),
            Result(scenario=SCENARIO, metric="us_per_dispatch_with_pending", value=with_pending,
                   unit="µs", n=n, ratio_to=f"{SCENARIO}:us_per_dispatch_none_pending",
                   note=note),
            Result(scenario=SCENARIO, metric="us_per_dispatch_none_pending_again", value=again,
                   unit="µs", n=n, ratio_to=f"{SCENARIO}:us_per_dispatch_none_pending",
                   note="after rejecting them (drift check)"),
        ]  # fmt: skip
    return out
