"""``shepherd demo``: the standalone runtime on a throw-away database, in a few seconds.

It stores three shell jobs and a python one (the same ones as ``examples/demo.toml``),
whose target is loaded as an application's are (``app``: ``runtime/_demo_app.py``,
as ``shepherd --app shepherd.runtime._demo_app:targets run`` would), queues seven
dispatches at different priorities, shows an enqueue refused because its payload does
not fit the target's declared type, runs the real daemon path (``run_daemon``, as
``shepherd run --exit-when-idle``) with concurrency 1 so that the run order shows the
priorities, then prints the status, the runs and the dead letters. Needs no server.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal

import anyio

from shepherd.runtime._cli_daemon import run_daemon
from shepherd.runtime._cli_fmt import emit_json, human_duration, print_fields, table, when
from shepherd.runtime._cli_jobs import save_jobs
from shepherd.runtime._cli_ops import enqueue_one
from shepherd.runtime._cli_store import open_store, wall
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import job_from_data
from shepherd.store.errors import ConfigError
from shepherd.store.models import Dispatch, EnqueueRequest, Run, Seconds

__all__ = ["DEMO_JOBS_TOML", "cmd_demo"]

DEMO_JOBS_TOML = """\
[[jobs]]
name = "hello"
description = "succeeds at once"
executor = "shell"
target = 'echo "hello from dispatch $SHEPHERD_DISPATCH_ID, payload $SHEPHERD_PAYLOAD"'
timeout = "10s"

[[jobs]]
name = "flaky"
description = "always fails: retried with a 200ms, 400ms backoff, then dead-lettered"
executor = "shell"
target = 'echo "attempt $SHEPHERD_ATTEMPT: upstream unavailable" >&2; exit 3'
timeout = "10s"
retry = { max_attempts = 3, base = "200ms", factor = 2.0 }

[[jobs]]
name = "slow"
description = "runs past its 1s timeout: its process group is killed"
executor = "shell"
target = "sleep 30"
timeout = "1s"
retry = { max_attempts = 1 }

[[jobs]]
name = "greet"
description = "a python target from the app, with a typed payload (a Greeting)"
executor = "python"
target = "greet"
timeout = "10s"
"""

# the python targets of the demo, loaded by name as `--app` / `app = "..."` loads them
DEMO_APP = "shepherd.runtime._demo_app:targets"

# (job, priority, payload) in the order they are queued; with concurrency 1 they run
# critical → high → normal (FIFO) → low → background, retries when they fall due.
_DISPATCHES: list[tuple[str, str, dict[str, Any]]] = [
    ("hello", "background", {"n": 1}),
    ("hello", "low", {"n": 2}),
    ("flaky", "normal", {}),
    ("greet", "normal", {"name": "ada", "times": 2}),
    ("slow", "normal", {}),
    ("hello", "high", {"n": 3}),
    ("hello", "critical", {"n": 4}),
]


def cmd_demo(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="shepherd-demo-"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file there, a directory that cannot be made
        why = "a file is there" if isinstance(exc, FileExistsError) else exc.strerror
        raise ConfigError(f"cannot use {str(directory)!r} ({why})", field="--dir") from None
    level: Literal["INFO", "WARNING"] = "INFO" if args.verbose else "WARNING"
    cfg = Config(
        database=str(directory / "demo.db"),
        concurrency=1,
        shutdown_grace=Seconds(2.0),
        log_level=level,
        app=DEMO_APP,
    )
    now = wall()
    specs = [job_from_data(j) for j in tomllib.loads(DEMO_JOBS_TOML)["jobs"]]
    anyio.run(save_jobs, cfg, specs, now)
    for job, prio, payload in _DISPATCHES:
        req = EnqueueRequest(job=job, priority=prio, payload=payload)  # type: ignore[arg-type]
        anyio.run(enqueue_one, cfg, req, now)
    try:  # a payload that does not fit greet's Greeting is refused, nothing stored
        anyio.run(enqueue_one, cfg, EnqueueRequest(job="greet", payload={"name": 7}), now)
        refused = None
    except ConfigError as exc:
        refused = str(exc)
    if not args.json:
        print(f"demo database: {cfg.database}")
        print(f"refused at enqueue: {refused}")
        print(f"queued {len(_DISPATCHES)} dispatches of 4 jobs; running the daemon until idle…")
    code = run_daemon(cfg, exit_when_idle=True, run_for=60.0)
    stats, runs, dispatches = anyio.run(_collect, cfg)
    priority = {d.id: d.priority for d in dispatches}
    dead = [d for d in dispatches if d.status == "dead"]
    if args.json:
        emit_json(
            {
                "database": cfg.database,
                "exit_code": code,
                "refused": refused,
                "status": stats,
                "runs": runs,
                "dead_letters": dead,
            }
        )
        return code
    print("\nstatus")
    print_fields(
        {
            "dispatches": "  ".join(f"{k} {v}" for k, v in stats["dispatches"].items()),
            "running runs": stats["runs_running"],
            "jobs": stats["jobs"],
        }
    )
    print("\nruns, in the order they started")
    table(
        [_demo_row(r, priority) for r in runs],
        ("run", "dispatch", "job", "priority", "attempt", "status", "took", "output"),
        max_width=60,
    )
    print("\ndead letters")
    table(
        [
            {
                "id": d.id,
                "job": d.job_name,
                "attempts": f"{d.attempt}/{d.max_attempts}",
                "reason": d.dead_reason,
                "outcome": d.outcome,
                "died": when(d.updated_at),
                "error": d.last_error,
            }
            for d in dead
        ],
        ("id", "job", "attempts", "reason", "outcome", "died", "error"),
        max_width=60,
    )
    print(f"\nlook around: shepherd --database {cfg.database} runs list | dlq list | status")
    return code


def _demo_row(r: Run, priority: dict[int, str]) -> dict[str, Any]:
    took = r.finished_at - r.started_at if r.finished_at is not None else None
    result = json.dumps(r.result) if r.result is not None else ""
    output = (r.stdout or "").strip() or (r.error or "") or result
    return {
        "run": r.id,
        "dispatch": r.dispatch_id,
        "job": r.job_name,
        "priority": priority.get(r.dispatch_id or 0),
        "attempt": r.attempt,
        "status": r.status,
        "took": human_duration(took),
        "output": output,
    }


async def _collect(cfg: Config) -> tuple[dict[str, Any], list[Run], list[Dispatch]]:
    async with open_store(cfg, create=False) as store:
        stats = await store.stats()
        runs = await store.runs(limit=1000)
        dispatches = await store.dispatches(limit=1000)
    return stats, sorted(runs, key=lambda r: r.id), sorted(dispatches, key=lambda d: d.id)
