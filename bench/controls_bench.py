"""Rate limits and pauses: what they cost the dispatch path, beside the plain path in
the same run (README "Rate limits", "Pause, resume, drain").

One runtime, three jobs on a no-op python target: ``work`` (plain), ``rated`` (a bucket
so wide it never empties: ``1000000/s``, burst 1,000,000, so every admission checks and
takes a token) and ``held`` (paused). Per size ``n``, µs per dispatch, first enqueue →
last done, in ``enqueue_many`` batches of 1,000:

- ``plain``: ``n`` dispatches of ``work``;
- ``rated``: ``n`` of ``rated`` (the token bucket's cost); both twice, interleaved, the
  better of the two kept;
- ``plain_beside_pause``: ``n`` of ``work`` while ``n`` dispatches of ``held`` wait
  behind their pause (the pause check on unrelated work, with a parked backlog);
- ``resume``: ``resume`` → the last of the ``n`` held dispatches done (how fast a
  resumed backlog drains);
- ``plain_again``: ``work`` once more (drift of the machine);
- ``plain_beside_rate_backlog``: ``work`` while ``n`` dispatches of ``throttled``
  (``10/s``, burst 1) wait behind their empty bucket and its tokens keep arriving (one
  of them waits on the clock, the rest are parked: a token must cost one check, not a
  pass over the backlog).
"""

from __future__ import annotations

import time

import anyio

from bench.context import BenchContext
from bench.report import Result
from shepherd.runtime import Config, EnqueueRequest, JobSpec, RunContext, Runtime

SCENARIO = "controls"
BATCH = 1_000


async def _noop(ctx: RunContext) -> None:
    return None


async def _enqueue(rt: Runtime, job: str, n: int) -> list[int]:
    ids: list[int] = []
    for lo in range(0, n, BATCH):
        ids += await rt.enqueue_many([EnqueueRequest(job=job) for _ in range(min(BATCH, n - lo))])
    return ids


async def _idle(rt: Runtime, ids: list[int]) -> None:
    for dispatch_id in ids[-1:]:
        await rt.wait(dispatch_id, timeout=600)
    while (await rt.stats())["runs_running"]:
        await anyio.sleep(0.005)


def _waiting(rt: Runtime) -> int:
    s = rt.statistics()["dispatcher"]
    return int(s["parked"]) + int(s["delayed"])


async def _work(rt: Runtime, job: str, n: int) -> float:
    began = time.perf_counter()
    await _idle(rt, await _enqueue(rt, job, n))
    return (time.perf_counter() - began) / n * 1e6


async def run(ctx: BenchContext) -> list[Result]:
    out: list[Result] = []
    for n in ctx.sizes:
        db = ctx.path("controls", f"bench-{n}.db")
        async with Runtime.open(
            Config(database=str(db), concurrency=64), targets={"noop": _noop}
        ) as rt:
            await rt.add_job(JobSpec(name="work", target="noop"))
            await rt.add_job(JobSpec(name="rated", target="noop", rate="1000000/s",
                                     burst=1_000_000))  # fmt: skip
            await rt.add_job(JobSpec(name="held", target="noop"))
            await rt.add_job(JobSpec(name="throttled", target="noop", rate="10/s", burst=1))
            await _work(rt, "work", min(n, 1_000))  # warm-up
            plains, rateds = [], []
            for _ in range(2):  # interleaved, the better of two: the machine is shared
                plains.append(await _work(rt, "work", n))
                rateds.append(await _work(rt, "rated", n))
            plain, rated = min(plains), min(rateds)
            await rt.pause("job", "held")
            held = await _enqueue(rt, "held", n)
            while rt.statistics()["dispatcher"]["pauses"]["job:held"]["waiting"] < n:
                await anyio.sleep(0.005)
            beside = await _work(rt, "work", n)
            began = time.perf_counter()
            await rt.resume("job", "held")
            await _idle(rt, held)
            resume = (time.perf_counter() - began) / n * 1e6
            again = await _work(rt, "work", n)
            await _enqueue(rt, "throttled", n)
            while _waiting(rt) < n // 2:  # all but the few a 10/s bucket let through
                await anyio.sleep(0.005)
            behind = await _work(rt, "work", n)
        base = f"{SCENARIO}:us_per_dispatch_plain"
        out += [
            Result(scenario=SCENARIO, metric="us_per_dispatch_plain", value=plain, unit="µs", n=n),
            Result(scenario=SCENARIO, metric="us_per_dispatch_rated", value=rated, unit="µs",
                   n=n, ratio_to=base, note="a bucket that never empties: check + take"),
            Result(scenario=SCENARIO, metric="us_per_dispatch_beside_pause", value=beside,
                   unit="µs", n=n, ratio_to=base, note=f"{n:,} held behind a job pause"),
            Result(scenario=SCENARIO, metric="us_per_dispatch_resumed", value=resume, unit="µs",
                   n=n, ratio_to=base, note="resume -> last held dispatch done"),
            Result(scenario=SCENARIO, metric="us_per_dispatch_plain_again", value=again,
                   unit="µs", n=n, ratio_to=base, note="drift check"),
            Result(scenario=SCENARIO, metric="us_per_dispatch_beside_rate_backlog", value=behind,
                   unit="µs", n=n, ratio_to=base,
                   note=f"{n:,} behind an empty 10/s bucket, its tokens arriving"),
        ]  # fmt: skip
    return out
