"""Shepherd's own scenarios: what they share (no-op jobs, an embedded runtime, results).

The scenarios live in ``bench/shepherd_*.py`` and are registered in
``bench/scenarios.py``:

- ``shepherd-enqueue`` (`bench.shepherd_enqueue`): enqueue rate, single producer,
  concurrent producers, ``enqueue_many`` batches.
- ``shepherd-e2e`` (`bench.shepherd_e2e`): first enqueue → last completion at
  concurrency 64 and 256, and the worker process's RSS.
- ``shepherd-pickup`` (`bench.shepherd_pickup`): enqueue → run start at a steady rate,
  in-process and from another process.
- ``shepherd-recovery`` (`bench.shepherd_recovery`): start-up on 100,000 queued
  dispatches and 1,000 runs orphaned by a dead process.

Every job is a no-op ``python`` target on the embedded runtime
(``Runtime.open(Config(...), targets=...)``) with ``synchronous=NORMAL`` (shepherd's
default), so ratios refer to the ``.normal`` figures of the floor and of huey.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from bench.report import Result
from shepherd.actors.executors.python import PythonTarget
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.store.models import JobSpec

__all__ = ["NOOP", "noop", "open_runtime", "result", "runtime_log"]

NOOP = "noop"


async def noop(_ctx: Any) -> None:
    return None


@contextmanager
def runtime_log(path: Path) -> Iterator[None]:
    """Send the runtime's log records (WARNING and up, as embedded by default) to
    ``path`` instead of stderr: written as in production, kept out of the report."""
    logger = logging.getLogger("shepherd")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved
        handler.close()


@asynccontextmanager
async def open_runtime(
    db: str | Path,
    *,
    concurrency: int = 64,
    targets: Mapping[str, PythonTarget] | None = None,
    jobs: tuple[JobSpec, ...] = (JobSpec(name=NOOP, target=NOOP),),
) -> AsyncIterator[Runtime]:
    """An embedded runtime on ``db`` (synchronous=NORMAL) with ``jobs`` added."""
    cfg = Config(database=str(db), concurrency=concurrency, synchronous="NORMAL")
    async with Runtime.open(cfg, targets=targets or {NOOP: noop}) as rt:
        for spec in jobs:
            await rt.add_job(spec)
        yield rt


def result(
    scenario: str,
    metric: str,
    value: float,
    unit: str,
    n: int | None = None,
    ratio_to: str | None = None,
    note: str = "",
) -> Result:
    return Result(
        scenario=scenario, metric=metric, value=value, unit=unit, n=n, ratio_to=ratio_to, note=note
    )
