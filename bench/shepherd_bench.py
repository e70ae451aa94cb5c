"""PLACEHOLDER: shepherd's own scenarios, not yet wired to the runtime.

To be replaced once ``runtime/`` can enqueue and run jobs. Planned figures, each with
its same-run reference (``ratio_to``):

- ``enqueue.normal`` (jobs/s, single producer)         vs ``huey:enqueue.normal`` and
  ``floor:commit_1000rows.normal`` (group commit should approach the batch floor)
- ``e2e.normal`` (jobs/s, first enqueue → last finish)  vs ``huey:e2e.normal``
- ``pickup_latency_p50/p99/max`` (ms, enqueue → run start; use `bench.report.percentiles`)
- ``scheduler_lateness_p50/p99/max`` (ms, due time → dispatch)
- ``recovery_time`` (s, kill -9 → all orphaned runs rescued and re-run)
- ``agent_turn_overhead`` (µs per turn over a bare coroutine)
- ``worker_rss_peak`` (MiB) vs ``huey:worker_rss_peak.normal``
- cost per dispatch at 1k / 100k / 1M queued (DESIGN.md "Performance design")

Until then this scenario reports a skip, never a number.
"""

from __future__ import annotations

from bench.context import BenchContext, ScenarioSkipped
from bench.report import Result

SCENARIO = "shepherd"


async def run(ctx: BenchContext) -> list[Result]:
    raise ScenarioSkipped("not yet wired: bench/shepherd_bench.py is a placeholder")
