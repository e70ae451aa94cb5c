"""``shell``: shell jobs end to end (enqueue -> outcome) beside the spawn floor, same run.

- ``floor.c2``: the floor, ``bash -c true`` spawned with ``asyncio.create_subprocess_exec``
  on the stdlib event loop, stdout and stderr piped and read to EOF, two at a time;
  processes/s. (``floor.c2.uvloop``: the same spawn on uvloop, for comparison.)
- ``e2e.c2`` / ``e2e.c8`` (on the stdlib loop) and ``e2e.c2.uvloop`` / ``e2e.c8.uvloop``:
  ``n`` shell jobs running ``true`` through one embedded runtime at concurrency 2 / 8,
  ``enqueue_many`` up front, first enqueue -> ``n``-th final ``OutcomeEvent``; runs/s,
  each against ``floor.c2``; ``<metric>.vs_floor``: the median of the per-round ratios,
  each to the mean of the floors measured just before and just after the figure.

``n`` is capped at 1,000 (a spawn costs milliseconds). Five rounds (see ``run``); a
fresh database per figure.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result
from shepherd.actors.messages import OutcomeEvent
from shepherd.runtime import Config, EnqueueRequest, JobSpec, Runtime

SCENARIO = "shell"
CAP = 1_000
ROUNDS = 5
_FLOOR = f"{SCENARIO}:floor.c2"


async def _floor(n: int, concurrency: int) -> float:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", "true",
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            await proc.communicate()

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return n / (time.perf_counter() - began)


async def _e2e(ctx: BenchContext, n: int, concurrency: int, tag: str) -> float:
    db = ctx.path(SCENARIO, f"e2e_{tag}_c{concurrency}_{n}.db")
    done = 0
    cfg = Config(database=str(db), concurrency=concurrency)
    async with Runtime.open(cfg) as rt:
        await rt.add_job(JobSpec(name="t", executor="shell", target="true"))
        async with rt.subscribe(OutcomeEvent, buffer=n + 16) as events:
            began = time.perf_counter()
            await rt.enqueue_many([EnqueueRequest(job="t") for _ in range(n)])
            async for ev in events:
                assert isinstance(ev, OutcomeEvent)
                if ev.final:
                    if ev.outcome != "ok":
                        raise RuntimeError(f"a `true` shell job ended {ev.outcome}")
                    done += 1
                    if done == n:
                        break
            return n / (time.perf_counter() - began)


async def _floor_std(n: int) -> float:
    await _floor(20, 2)  # warm-up
    return await _floor(n, 2)


def _bracketed(
    ctx: BenchContext, n: int, tag: str, r: int, options: dict[str, Any]
) -> Iterator[tuple[str, float, float]]:
    """Each figure of one loop between two stdlib floors, measured just before and just
    after it: ``(metric, value, floor)``, the floor being the mean of the two (the
    machine's speed drifts within seconds here; a floor on one side only follows it
    half as well)."""
    floor = anyio.run(_floor_std, n, backend="asyncio")
    yield "floor.c2", floor, floor
    figures: list[tuple[str, Any]] = [(f"e2e.c{c}{tag}", (_e2e, ctx, n, c, f"{tag or 'std'}{r}"))
                                      for c in (2, 8)]  # fmt: skip
    if tag:
        figures.insert(0, (f"floor.c2{tag}", (_floor, n, 2)))
    for metric, (fn, *args) in figures:
        value = anyio.run(fn, *args, backend="asyncio", backend_options=options)
        after = anyio.run(_floor_std, n, backend="asyncio")
        yield metric, value, (floor + after) / 2
        yield "floor.c2", after, after
        floor = after


def _loops() -> list[tuple[str, dict[str, Any]]]:
    loops: list[tuple[str, dict[str, Any]]] = [("", {})]
    try:
        import uvloop  # noqa: F401

        loops.append((".uvloop", {"use_uvloop": True}))
    except ImportError:
        pass
    return loops


def run(ctx: BenchContext) -> list[Result]:
    """ROUNDS rounds; in each, per event loop, that loop's figures with a stdlib floor
    before and after each (``_bracketed``: load from elsewhere on the machine moves
    both alike). ``.vs_floor`` is the median of those per-round ratios; the rates are
    medians too (``floor.c2``: of every floor run), each note gives the range."""
    out: list[Result] = []
    for size in ctx.sizes:
        n = min(size, CAP)
        rates: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        for r in range(1 if ctx.quick else ROUNDS):
            for tag, options in _loops():
                for metric, value, floor in _bracketed(ctx, n, tag, r, options):
                    rates.setdefault(metric, []).append(value)
                    if metric != "floor.c2":
                        ratios.setdefault(metric, []).append(value / floor)
        for metric, values in rates.items():
            floor_metric = metric == "floor.c2"
            spread = f"median of {len(values)}, {min(values):.0f} to {max(values):.0f}"
            out.append(
                Result(
                    scenario=SCENARIO, metric=metric, value=statistics.median(values),
                    unit="processes/s" if metric.startswith("floor") else "runs/s", n=n,
                    ratio_to=None if floor_metric else _FLOOR,
                    note=f"bash -c true, piped, stdlib loop, 2 at a time; {spread}"
                    if floor_metric else spread,
                )
            )  # fmt: skip
        for metric, values in ratios.items():
            spread = ", ".join(f"{v:.2f}" for v in values)
            out.append(
                Result(
                    scenario=SCENARIO, metric=f"{metric}.vs_floor", unit="x floor", n=n,
                    value=statistics.median(values),
                    note=f"median of per-round ratios to the floors before and after: {spread}",
                )
            )  # fmt: skip
    return out
