"""``shepherd pause | resume | pauses | drain``: hold work, let it go, stop admitting.

    pause job|pool|executor|agent NAME [--reason R]   hold the scope's queued dispatches
    pause runtime | pause --all [--reason R]          hold everything
    resume job|pool|executor|agent NAME | resume runtime
    resume --all                                      lift every pause
    pauses                                            what is paused, since when, by whom
    drain [--timeout DUR]                             pause the runtime, wait for its runs

Each command writes the store (``store.ops.controls``) and wakes the daemon serving the
database (``send_wake(db, "p")``), whose dispatcher reads the pauses again at once; with
no daemon the pause waits in the store and holds from the next start. Running runs are
never touched. ``drain`` then waits, reading the store, until no run is ``running``
(and stays so for ``SETTLE`` seconds after the wake, so a claim the daemon made just
before it read the pause is counted), at most ``--timeout``; the daemon stays paused
until ``resume --all`` (or ``resume runtime``). Exit codes: 0; 1 unknown name, nothing
paused there, or a drain that timed out with runs still running; 2 bad input (nothing
stored).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._cli_fmt import CliError, emit_json, human, print_fields, table
from shepherd.runtime._cli_status_parts import pause_row as _row
from shepherd.runtime._cli_store import (
    builtin_executors,
    daemon_pid,
    duration,
    open_store,
    origin,
    wall,
)
from shepherd.runtime._controls_api import (
    check_reason,
    known_names,
    pause_target,
    resume_target,
)
from shepherd.runtime.config import Config
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import PAUSE_SCOPES, Pause
from shepherd.store.ops import ClearPauses, SetPause

__all__ = ["add_controls_commands"]

SETTLE = 0.2  # seconds without a running run, after the wake, that count as drained
_POLL = 0.05


def add_controls_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """``pause``, ``resume``, ``pauses`` and ``drain`` in ``build_parser``."""
    for name, fn, what in (
        ("pause", cmd_pause, "hold queued work of a job, pool, executor, agent or everything"),
        ("resume", cmd_resume, "let paused work start again, at once"),
    ):
        p = cmd(sub, name, fn, what)
        p.add_argument("scope", nargs="?", metavar="SCOPE", help=" | ".join(PAUSE_SCOPES))
        p.add_argument("name", nargs="?", metavar="NAME")
        p.add_argument(
            "--all",
            action="store_true",
            help="the whole runtime" if name == "pause" else "every pause",
        )
        if name == "pause":
            p.add_argument("--reason", metavar="TEXT", help="shown in pauses and status")
    cmd(sub, "pauses", cmd_pauses, "what is paused, since when, by whom")
    p = cmd(sub, "drain", cmd_drain, "stop admitting (pause the runtime), wait for running runs")
    p.add_argument("--timeout", type=duration, metavar="DUR", help="give up after, e.g. 30s")


def _scope(args: argparse.Namespace) -> tuple[str, str | None]:
    if args.all:
        if args.scope is not None:
            raise ConfigError("--all takes no scope or name", field="--all")
        return ("runtime" if args.command == "pause" else "all"), None
    if args.scope is None:
        raise ConfigError(f"give a scope ({', '.join(PAUSE_SCOPES)}) or --all", field="scope")
    return args.scope, args.name


def cmd_pause(args: argparse.Namespace, cfg: Config) -> int:
    scope, name = _scope(args)
    check_reason(args.reason)
    pause = anyio.run(_pause, cfg, scope, name, args.reason)
    send_wake(cfg.database, "p")
    if args.json:
        emit_json({**_row(pause), "serving": daemon_pid(cfg.database) is not None})
    else:
        print(f"paused {pause.key}" + ("" if daemon_pid(cfg.database) else " (no daemon serving)"))
    return 0


async def _pause(cfg: Config, scope: str, name: str | None, reason: str | None) -> Pause:
    executors = list(builtin_executors(cfg, with_app=False)) if scope == "executor" else []
    async with open_store(cfg) as store:
        names = (
            await known_names(store, scope, executors, cfg.pools) if scope in PAUSE_SCOPES else []
        )
        s, n = pause_target(scope, name, lambda _: names)
        await store.apply_one(SetPause(scope=s, name=n, at=wall(), by=origin(), reason=reason))
        return next(p for p in await store.pauses() if (p.scope, p.name) == (s, n))


def cmd_resume(args: argparse.Namespace, cfg: Config) -> int:
    scope, name = _scope(args)
    s, n = resume_target(scope, name)
    resumed: list[str] = anyio.run(_apply, cfg, ClearPauses(scope=s, name=n))
    send_wake(cfg.database, "p")
    if not resumed and s is not None:
        raise NotFound(f"{'the runtime' if s == 'runtime' else f'{s} {n!r}'} is not paused")
    if args.json:
        emit_json({"resumed": resumed})
    else:
        print(f"resumed {', '.join(resumed)}" if resumed else "nothing was paused")
    return 0


async def _apply(cfg: Config, op: ClearPauses) -> Any:
    async with open_store(cfg, create=False) as store:
        return await store.apply_one(op)


def cmd_pauses(args: argparse.Namespace, cfg: Config) -> int:
    pauses = anyio.run(_pauses, cfg)
    if args.json:
        emit_json([_row(p) for p in pauses])
    else:
        table([human(_row(p)) for p in pauses], ("key", "paused_at", "by", "reason"))
    return 0


async def _pauses(cfg: Config) -> list[Pause]:
    async with open_store(cfg, create=False) as store:
        return await store.pauses()


def cmd_drain(args: argparse.Namespace, cfg: Config) -> int:
    began = time.monotonic()
    serving = daemon_pid(cfg.database) is not None
    pause, waited, running = anyio.run(_drain, cfg, serving, args.timeout)
    data = {
        "drained": running == 0,
        "waited_for": waited,
        "running": running,
        "seconds": round(time.monotonic() - began, 3),
        "paused": _row(pause),
        "serving": serving,
    }
    if args.json:
        emit_json(data)
    else:
        print_fields({k: v for k, v in data.items() if k != "paused"})
    if running and not serving:
        raise CliError(f"no daemon serves {cfg.database}; {running} run(s) marked running")
    if running:
        raise CliError(f"{running} run(s) still running after {args.timeout:g}s", code=1)
    return 0


async def _drain(cfg: Config, serving: bool, timeout: float | None) -> tuple[Pause, int, int]:
    """Pause the runtime and wake the daemon; then (the pause, the runs running when
    asked, the runs still running at the end). Polls the store: the CLI is another
    process (the daemon itself needs no poll)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    async with open_store(cfg) as store:
        first = (await store.stats())["runs_running"]  # read before the pause is seen
        await store.apply_one(
            SetPause(scope="runtime", name="", at=wall(), by=origin(), reason="drain")
        )
        send_wake(cfg.database, "p")
        pause = next(p for p in await store.pauses() if p.scope == "runtime")
        running, quiet_since = first, None
        while serving:
            now = time.monotonic()
            running = (await store.stats())["runs_running"]
            first = max(first, running)
            if running:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= SETTLE:
                break
            if deadline is not None and now >= deadline:
                break
            await anyio.sleep(_POLL)
    return pause, first, running


# -- in ``shepherd status`` ---------------------------------------------------------
