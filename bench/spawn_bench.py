"""Spawn messages and task groups beside the plain dispatch path, in the same run
(README "Spawn messages", "Task groups").

One runtime, a no-op python target. Per size ``n`` (capped at 2,000: every spawn adds
and removes a job):

- ``enqueue``: ``n`` awaited ``rt.enqueue`` of one job, first call → last run done,
  µs per dispatch (the plain path);
- ``spawn``: ``n`` awaited ``send_message(kind="spawn")``, each validated, committed
  with its one-shot job and dispatch in one transaction, run, and its job removed
  after the run; first call → last job removed, µs per spawn;
- ``group report``: one group of ``n`` members (at most 1,000), each reporting
  ``completed`` awaited, the last one ending the group and queueing its summary;
  µs per report.
"""

from __future__ import annotations

import json
import time

import anyio

from bench.context import BenchContext
from bench.report import Result
from shepherd.runtime import Config, JobSpec, RunContext, Runtime

SCENARIO = "spawn"
CAP = 2_000


async def _noop(ctx: RunContext) -> None:
    return None


async def _idle(rt: Runtime) -> None:
    while True:
        d = (await rt.stats())["dispatches"]
        if not d["queued"] and not d["running"]:
            return
        await anyio.sleep(0.005)


async def _enqueue(rt: Runtime, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        await rt.enqueue("work")
    await _idle(rt)
    return (time.perf_counter() - began) / n * 1e6


async def _spawn(rt: Runtime, n: int) -> float:
    body = json.dumps({"target": "noop"})
    began = time.perf_counter()
    for _ in range(n):
        await rt.send_message("bench", "main", body, kind="spawn")
    await _idle(rt)
    while len(await rt.list_jobs()) > 1:  # every one-shot removed after its run
        await anyio.sleep(0.005)
    return (time.perf_counter() - began) / n * 1e6


async def _reports(rt: Runtime, n: int) -> float:
    members = [f"m{i}" for i in range(n)]
    group = await rt.create_group(f"bench-{n}", members)
    began = time.perf_counter()
    for label in members:
        await rt.report(group.id, label, "completed")
    took = (time.perf_counter() - began) / n * 1e6
    assert (await rt.group(group.id)).status == "completed"
    return took


async def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    for size in ctx.sizes:
        n = min(size, CAP)
        db = ctx.path("spawn", f"bench-{n}.db")
        async with Runtime.open(Config(database=str(db), concurrency=64),
                                targets={"noop": _noop}) as rt:  # fmt: skip
            await rt.add_job(JobSpec(name="work", target="noop"))
            await _enqueue(rt, min(n, 200))  # warm-up
            plain = await _enqueue(rt, n)
            spawn = await _spawn(rt, n)
            again = await _enqueue(rt, n)
            reports = await _reports(rt, min(n, 1_000))
        base = f"{SCENARIO}:us_per_enqueue_awaited"
        out += [
            Result(scenario=SCENARIO, metric="us_per_enqueue_awaited", value=plain, unit="µs",
                   n=n, note="awaited enqueue → run done, one at a time"),
            Result(scenario=SCENARIO, metric="us_per_spawn_awaited", value=spawn, unit="µs",
                   n=n, ratio_to=base, note="spawn message → job added, run, removed"),
            Result(scenario=SCENARIO, metric="us_per_enqueue_again", value=again, unit="µs",
                   n=n, ratio_to=base, note="drift check"),
            Result(scenario=SCENARIO, metric="us_per_group_report", value=reports, unit="µs",
                   n=n, ratio_to=base,
                   note=f"awaited report of one member of {min(n, 1_000):,}"),
        ]  # fmt: skip
    return out
