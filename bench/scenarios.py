"""The scenario registry and the runner.

A scenario is a callable ``fn(ctx: BenchContext) -> list[Result]``, sync or ``async``
(async ones run under anyio on asyncio, with uvloop when installed, one event loop per
scenario). Register one with::

    @register("name", needs=("floor", "huey"), description="...")
    async def run(ctx: BenchContext) -> list[Result]: ...

``needs`` are scenarios whose figures this one's ``ratio_to`` refers to; ``--only name``
runs them first, so every ratio compares figures of the same run. A scenario that
cannot measure honestly raises `ScenarioSkipped`; any other exception is reported as
a failure and the run goes on.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from bench import (
    agent_bench,
    agents_bench,
    approval_bench,
    backlog_bench,
    backup_bench,
    chain_bench,
    cli_bench,
    controls_bench,
    events_bench,
    floor,
    http_bench,
    lease_bench,
    ocs_import_bench,
    pg_bench,
    prune_bench,
    scheduler_bench,
    shell_bench,
    shepherd_e2e,
    shepherd_enqueue,
    shepherd_memory,
    shepherd_pickup,
    shepherd_recovery,
    shepherd_socket,
    shepherd_xproc,
    spawn_bench,
    spool_bench,
    ui_bench,
)
from bench.context import BenchContext, ScenarioSkipped
from bench.peers import huey_peer
from bench.report import Report, Result, apply_ratios

ScenarioFn = Callable[[BenchContext], list[Result] | Awaitable[list[Result]]]

try:
    import uvloop  # noqa: F401

    USE_UVLOOP = True
except ImportError:  # pragma: no cover - uvloop is optional
    USE_UVLOOP = False


@dataclass(frozen=True)
class Scenario:
    name: str
    fn: ScenarioFn
    needs: tuple[str, ...] = ()
    description: str = ""


REGISTRY: dict[str, Scenario] = {}


def register(
    name: str, *, needs: Sequence[str] = (), description: str = ""
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Decorator adding ``fn`` to `REGISTRY` under ``name`` (names are unique)."""

    def decorator(fn: ScenarioFn) -> ScenarioFn:
        if name in REGISTRY:
            raise ValueError(f"scenario {name!r} is already registered")
        unknown = [n for n in needs if n not in REGISTRY]
        if unknown:
            raise ValueError(f"scenario {name!r} needs unregistered {unknown}")
        REGISTRY[name] = Scenario(name, fn, tuple(needs), description)
        return fn

    return decorator


def resolve(only: Sequence[str] | None = None) -> list[Scenario]:
    """The scenarios to run, in registration order, with their ``needs`` included."""
    if not only:
        return list(REGISTRY.values())
    unknown = [n for n in only if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {sorted(REGISTRY)}")
    wanted: set[str] = set()
    stack = list(only)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(REGISTRY[name].needs)
    return [s for s in REGISTRY.values() if s.name in wanted]


def run_scenario(scenario: Scenario, ctx: BenchContext) -> list[Result]:
    if inspect.iscoroutinefunction(scenario.fn):
        fn: Any = scenario.fn
        return anyio.run(fn, ctx, backend="asyncio", backend_options={"use_uvloop": USE_UVLOOP})
    result = scenario.fn(ctx)
    assert isinstance(result, list), f"{scenario.name} returned {type(result)}"
    return result


def run(
    scenarios: Sequence[Scenario],
    ctx: BenchContext,
    meta: dict[str, Any],
    progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Run ``scenarios`` in order, then compute every ratio from this run's figures."""
    report = Report(meta=meta)
    for s in scenarios:
        progress(f"running {s.name} (sizes {list(ctx.sizes)})")
        try:
            report.results.extend(run_scenario(s, ctx))
        except ScenarioSkipped as exc:
            report.skipped[s.name] = str(exc)
        except Exception as exc:
            report.failed[s.name] = f"{exc!r}"
            progress("".join(traceback.format_exception(exc)))
    report.results = apply_ratios(report.results)
    return report


# -- built-in scenarios, in run order ------------------------------------------------

register("floor", description="raw aiosqlite commit rate, WAL, NORMAL and FULL")(floor.run)
register("huey", needs=("floor",), description="huey SqliteStorage: enqueue, drain, e2e, RSS")(
    huey_peer.run
)
register(
    "shepherd-enqueue",
    needs=("floor", "huey"),
    description="shepherd enqueue: single awaited, 16 producers, enqueue_many(1,000)",
)(shepherd_enqueue.run)
register(
    "shepherd-e2e",
    needs=("floor", "huey"),
    description="shepherd first enqueue -> last completion at c=64/256, worker RSS",
)(shepherd_e2e.run)
register(
    "shepherd-memory",
    needs=("floor",),
    description="RSS of an embedded runtime (defaults, SQLite) idle and after 10,000 runs",
)(shepherd_memory.run)
register(
    "shepherd-pickup",
    description="shepherd enqueue -> run start at 500 jobs/s, in-process and cross-process",
)(shepherd_pickup.run)
register(
    "shepherd-xproc",
    description="shepherd e2e with the producer in another process, one enqueue at a time,"
    " beside the backlog drain rate",
)(shepherd_xproc.run)
register(
    "shepherd-socket",
    description="shepherd e2e with producers in other processes through the enqueue socket,"
    " beside the direct-write producer and in-process enqueue; pickup at 200 jobs/s",
)(shepherd_socket.run)
register(
    "shepherd-recovery",
    description="shepherd start-up on 100k queued + 1k orphaned runs (issue 4)",
)(shepherd_recovery.run)
register(
    "shepherd-backlog",
    description="worker RSS and cost per dispatch at 1,000 vs 1,000,000 queued, SQLite and"
    " PostgreSQL (the dispatcher's window of the queue's head); ~5 min",
)(backlog_bench.run)
register(
    "shepherd-prune",
    description="store writer commit latency p50/p99 while the pruner deletes 1M rows; ~2 min",
)(prune_bench.run)
register(
    "shepherd-backup",
    description="backup of a 1 GB database: its time, dispatch throughput meanwhile; ~2 min",
)(backup_bench.run)
register(
    "shepherd-scheduler",
    description="10k cron jobs/min + 1k one-shots: lateness, CPU/slot, RSS (issue 3); ~8 min",
)(scheduler_bench.run)
register(
    "spool",
    description="spool files ingested/s (1,000 at once, 200/s steady), rename -> run start"
    " p50/p99, beside rt.enqueue of the same jobs",
)(spool_bench.run)
register(
    "agent",
    description="agent-turn overhead vs the raw gateway stand-in at c=1/10/100 (issue 5)",
)(agent_bench.run)
register(
    "chain",
    description="workflow chains: parent finish -> child start p50/p99 over 1,000 steps"
    " (depth 10) and a fan-out of 25, beside enqueue -> start",
)(chain_bench.run)
register(
    "approval",
    description="approval gates: µs per ungated dispatch with 10,000 approvals pending vs"
    " none pending, same run",
)(approval_bench.run)
register(
    "agents",
    description="capability-based assignment: assignments/s and p50/p99 with 1,000 agents"
    " and 100k queued dispatches, beside the plain dispatch path",
)(agents_bench.run)
register(
    "spawn",
    description="spawn messages (validated, job added, run, removed) and task-group reports,"
    " µs each, beside awaited enqueue",
)(spawn_bench.run)
register(
    "shell",
    description="shell `true` jobs enqueue -> outcome at c=2/8, beside bash -c true spawned"
    " through the stdlib asyncio loop two at a time (the spawn floor)",
)(shell_bench.run)
register(
    "cli",
    description="the CLI's start: shepherd enqueue (socket, direct) and status (daemon or"
    " not), with and without 5 config [[jobs]], wall ms beside python -c pass",
)(cli_bench.run)
register(
    "controls",
    description="rate limits and pauses: µs per dispatch with a token bucket, beside a paused"
    " backlog, and a resumed backlog's drain, beside the plain dispatch path",
)(controls_bench.run)
register(
    "ocs-import",
    description="import of an openclaw-scheduler database (30 and 1,000 jobs), beside"
    " `jobs add --file` and Runtime.add_job of the same jobs",
)(ocs_import_bench.run)
register(
    "leases",
    description="external workers: claim -> complete round trips/s over HTTP against the"
    " daemon (1 and 4 workers), beside the in-process python executor draining the same",
)(lease_bench.run)
register(
    "ui",
    description="the dashboard: server time per page (p50/p99) at 1,000 and 1,000,000 runs"
    " with 100,000 queued, and a run's outcome to its row in an open page (browser, SSE)",
)(ui_bench.run)
register(
    "http",
    description="the REST API: POST /api/v1/dispatches/s with 1 and 16 keep-alive clients"
    " against the daemon, enqueue -> run start p50/p99 at 200/s, beside Runtime.enqueue",
)(http_bench.run)
register(
    "events",
    description="observability's cost: runs/s with no stream client, one SSE client, NATS"
    " publishing (same run), and SSE delivery latency p50/p99 (outcome -> client)",
)(events_bench.run)
register(
    "postgres",
    description="shepherd on PostgreSQL beside pgqueuer and procrastinate (same server, same"
    " run): enqueue one by one and in batches, backlog drain, e2e, pickup p50/p99, 1-3 nodes",
)(pg_bench.run)
