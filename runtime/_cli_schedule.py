"""CLI commands that change a stored job's schedule or fire it: ``jobs update | enable |
disable | run | next``. Like every command they work on the database file directly and
wake the daemon serving it; a rejected change leaves the stored job untouched."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.actors.scheduler.cron import upcoming
from shepherd.runtime._chains import check_graph, config_error
from shepherd.runtime._cli_fmt import CliError, emit_json, print_fields, table, when
from shepherd.runtime._cli_jobflags import any_job_flag
from shepherd.runtime._cli_jobs import flag_data, spec_from_data
from shepherd.runtime._cli_store import builtin_executors, open_store, origin, wall
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import check_payload, new_dispatch, save_op
from shepherd.store.errors import ConfigError, NotFound, StoreError
from shepherd.store.models import EnqueueRequest, JobRow, to_builtins
from shepherd.store.ops import InsertDispatches

__all__ = [
    "cmd_jobs_disable",
    "cmd_jobs_enable",
    "cmd_jobs_next",
    "cmd_jobs_run",
    "cmd_jobs_update",
]


def cmd_jobs_update(args: argparse.Namespace, cfg: Config) -> int:
    if not any_job_flag(args):  # nothing to change: the stored job is left as it is
        raise CliError("nothing to change: give a flag of the fields to set", code=2)
    row = anyio.run(_change, cfg, args.name, lambda old: flag_data(args, old))
    return _report(args, row, "updated")


def cmd_jobs_enable(args: argparse.Namespace, cfg: Config) -> int:
    row = anyio.run(_change, cfg, args.name, lambda old: {**old, "enabled": True})
    return _report(args, row, "enabled")


def cmd_jobs_disable(args: argparse.Namespace, cfg: Config) -> int:
    row = anyio.run(_change, cfg, args.name, lambda old: {**old, "enabled": False})
    return _report(args, row, "disabled")


async def _change(cfg: Config, name: str, edit: Any) -> JobRow:
    now = wall()
    async with open_store(cfg, create=False) as store:
        row = await store.job(name)
        if row is None:
            raise NotFound(f"no job named {name!r}")
        data = edit(to_builtins(row.spec))
        if data.get("name", name) != name:
            raise ConfigError("a job cannot be renamed; add a new one", field="NAME")
        spec = spec_from_data(data, now, cfg, previous=row.spec)
        check_graph([spec], [r.spec for r in await store.jobs()], field=lambda s: "--parent")
        try:  # same schedule keeps its next slot
            await store.apply_one(save_op(spec, now, row))
        except StoreError as exc:
            raise config_error(exc) from None
        new = await store.job(name)
    send_wake(cfg.database, "j")
    assert new is not None
    return new


def _report(args: argparse.Namespace, row: JobRow, what: str) -> int:
    summary = {"name": row.name, "enabled": row.spec.enabled, "next_run_at": row.next_run_at}
    if args.json:
        emit_json(summary)
    else:
        nxt = when(row.next_run_at) if row.next_run_at else "none"
        print(f"{what} job {row.name!r}; next run {nxt}")
    return 0


def cmd_jobs_run(args: argparse.Namespace, cfg: Config) -> int:
    """Run-now: one dispatch now, also for a disabled job; the schedule does not move."""
    dispatch_id = anyio.run(_run_now, cfg, args.name, args.payload)
    send_wake(cfg.database, "d")
    if args.json:
        emit_json({"dispatch_id": dispatch_id, "job": args.name})
    else:
        print(dispatch_id)
    return 0


async def _run_now(cfg: Config, name: str, payload: dict[str, Any] | None) -> int:
    now = wall()
    executors = builtin_executors(cfg) if cfg.app else None  # as enqueue: typed payloads
    async with open_store(cfg, create=False) as store:
        row = await store.job(name)
        if row is None:
            raise NotFound(f"no job named {name!r}")
        new = new_dispatch(
            row, EnqueueRequest(job=name, payload=payload, kind="run_now"), now, where="run"
        )
        if executors is not None:
            check_payload(row.spec, payload, executors)
        [got] = await store.apply_one(InsertDispatches([new], origin(), now))
    assert got is not None
    if got[1] == 0:  # held by its job's approval gate (approval.sources has run_now)
        send_wake(cfg.database, "a")
    return int(got[0])


def cmd_jobs_next(args: argparse.Namespace, cfg: Config) -> int:
    row = anyio.run(_get, cfg, args.name)
    times = upcoming(row.spec, row.next_run_at, args.count, anchor=row.anchor)
    if args.json:
        emit_json({"name": row.name, "next": times})
    elif times:
        table([{"n": i + 1, "at": when(t)} for i, t in enumerate(times)], ("n", "at"))
    else:
        print_fields({"name": row.name, "next": "no scheduled runs"})
    return 0


async def _get(cfg: Config, name: str) -> JobRow:
    async with open_store(cfg, create=False) as store:
        row = await store.job(name)
    if row is None:
        raise NotFound(f"no job named {name!r}")
    return row
