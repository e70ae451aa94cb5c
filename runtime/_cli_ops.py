"""CLI commands on the queue: enqueue, cancel, runs, dlq (``status``: ``_cli_status``).

Each command validates its arguments first (argparse types), then opens the store,
applies at most one write op (``cancel --cascade``: two, the cancel and the chain's)
and wakes the daemon serving the database, if any. The module is a little longer than
most because the queue's commands share its helpers (the store, the payload checks).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._cli_enqueue_direct import cmd_enqueue
from shepherd.runtime._cli_fmt import (
    CliError,
    emit_json,
    human,
    print_fields,
    table,
    when,
)
from shepherd.runtime._cli_progress import progress
from shepherd.runtime._cli_status_parts import run_row  # re-exported
from shepherd.runtime._cli_store import builtin_executors, open_store, origin, wall
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import check_payload, new_dispatch
from shepherd.store.errors import NotFound
from shepherd.store.models import Dispatch, EnqueueRequest, Run
from shepherd.store.ops import CancelChain, CancelDispatch, InsertDispatches, PurgeDead, RetryDead
from shepherd.store.protocol import Store

T = TypeVar("T")

__all__ = [
    "cmd_cancel",
    "cmd_dlq_list",
    "cmd_dlq_purge",
    "cmd_dlq_retry",
    "cmd_enqueue",
    "cmd_runs_list",
    "cmd_runs_show",
    "dead_row",
    "enqueue_one",
    "run_row",
    "show_run",
]

_MANY = 1_000_000
_CHUNK = 500  # dead letters per commit of `dlq retry` / `dlq purge --all`


# -- enqueue / cancel ---------------------------------------------------------------


async def enqueue_one(cfg: Config, req: EnqueueRequest, now: float) -> tuple[int, bool]:
    # with an app (--app, or app in the config) its targets are known here, and a
    # payload its target's declared type refuses is refused before anything is stored
    executors = builtin_executors(cfg) if cfg.app else None
    async with open_store(cfg, create=False) as store:  # no file: no job (first-run hint)
        row = await store.job(req.job)
        if row is None:
            raise NotFound(f"no job named {req.job!r}")
        new = new_dispatch(row, req, now, where="")
        if executors is not None:
            check_payload(row.spec, req.payload, executors)
        [got] = await store.apply_one(InsertDispatches([new], origin(), now))
    if isinstance(got, int):  # the dispatch the producer's key is bound to, any state
        return got, True
    if got[1] == 0:  # held by its job's approval gate: the daemon times it out
        send_wake(cfg.database, "a")
    return int(got[0]), False


def cmd_cancel(args: argparse.Namespace, cfg: Config) -> int:
    cascade = bool(getattr(args, "cascade", False))
    status, children = anyio.run(_cancel, cfg, args.dispatch_id, cascade)
    if status is None:
        raise NotFound(f"no dispatch {args.dispatch_id}")
    ended = status not in ("cancelled", "running")  # "ended:cancelled": cancelled before
    status = status.removeprefix("ended:")
    result = "cancel_requested" if status == "running" else status
    if args.json and not (ended and not children):  # ended: only the error, as --url
        out: dict[str, Any] = {"id": args.dispatch_id, "result": result}
        if cascade:
            out["children_cancelled"] = children
        emit_json(out)
    if ended and not children:  # as the HTTP API's 409 (``--url``)
        raise CliError(f"dispatch {args.dispatch_id} already ended ({status}); nothing to cancel")
    send_wake(cfg.database, "c")
    if not args.json:
        if not ended:
            what = "running: cancel requested" if status == "running" else "cancelled"
            print(f"dispatch {args.dispatch_id} {what}")
        if children:
            print(f"cancelled {len(children)} chain dispatch(es): {', '.join(map(str, children))}")
    return 0


async def _cancel(cfg: Config, dispatch_id: int, cascade: bool) -> tuple[str | None, list[int]]:
    """The dispatch, then (``cascade``) its chain dispatches not yet started. Its status
    is ``ended:cancelled`` when it was cancelled before (the op answers ``cancelled``
    for both)."""
    async with open_store(cfg, create=False) as store:
        now = wall()
        before = await store.dispatch(dispatch_id)
        status = await store.apply_one(CancelDispatch(dispatch_id, now))
        if status == "cancelled" and before is not None and before.status == "cancelled":
            status = "ended:cancelled"
        children: list[int] = []
        if cascade and status is not None:
            children = await store.apply_one(CancelChain(dispatch_id, now))
        return status, children


async def _apply(cfg: Config, op: Any) -> Any:
    async with open_store(cfg, create=False) as store:
        return await store.apply_one(op)


# -- runs ----------------------------------------------------------------------------


def cmd_runs_list(args: argparse.Namespace, cfg: Config) -> int:
    runs = anyio.run(
        _read, cfg, lambda s: s.runs(job=args.job, status=args.status, limit=args.limit)
    )
    if args.json:
        emit_json(runs)
        return 0
    table(
        [run_row(r) for r in runs],
        ("id", "dispatch", "job", "attempt", "status", "started", "took", "exit", "error"),
    )
    return 0


def cmd_runs_show(args: argparse.Namespace, cfg: Config) -> int:
    run = anyio.run(_read, cfg, lambda s: s.run(args.run_id))
    if run is None:
        raise NotFound(f"no run {args.run_id}")
    return show_run(args, run)


def show_run(args: argparse.Namespace, run: Run) -> int:
    """``runs show``'s output (a run read here or from a daemon's API)."""
    if args.json:
        emit_json(run)
        return 0
    data = human(run)
    stdout, stderr = data.pop("stdout"), data.pop("stderr")
    print_fields(data)
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        print(f"--- {name} ---")
        print(text.rstrip("\n") if text else "(empty)")
    return 0


async def _read(cfg: Config, ask: Callable[[Store], Awaitable[T]]) -> T:
    """One typed read (``ask(store)``) on the existing database."""
    async with open_store(cfg, create=False) as store:
        return await ask(store)


# -- dead letters ----------------------------------------------------------------------


def dead_row(d: Dispatch) -> dict[str, Any]:
    return {
        "id": d.id,
        "job": d.job_name,
        "attempts": f"{d.attempt}/{d.max_attempts}",
        "reason": d.dead_reason,
        "outcome": d.outcome,
        "died": when(d.updated_at),
        "error": d.last_error,
    }


def cmd_dlq_list(args: argparse.Namespace, cfg: Config) -> int:
    dead = anyio.run(
        _read, cfg, lambda s: s.dispatches(status="dead", job=args.job, limit=args.limit)
    )
    if args.json:
        emit_json(dead)
        return 0
    table(
        [dead_row(d) for d in dead],
        ("id", "job", "attempts", "reason", "outcome", "died", "error"),
    )
    return 0


def cmd_dlq_retry(args: argparse.Namespace, cfg: Config) -> int:
    if bool(args.ids) == bool(args.all):
        raise CliError("give dead-letter ids or --all (not both)", code=2)
    retried, asked = anyio.run(_retry, cfg, args.ids, args.job)
    if retried:
        send_wake(cfg.database, "d")
    missing = [i for i in asked if i not in set(retried)]
    if args.json:
        emit_json({"retried": retried, "not_dead": missing})
    else:
        print(
            f"retried {len(retried)} dead letter(s)"
            + (f": {', '.join(map(str, retried))}" if retried else "")
        )
    if missing:
        raise CliError(f"not dead letters: {', '.join(map(str, missing))}")
    return 0


async def _retry(cfg: Config, ids: list[int], job: str | None) -> tuple[list[int], list[int]]:
    async with open_store(cfg, create=False) as store:
        if not ids:
            dead = await store.dispatches(status="dead", job=job, limit=_MANY)
            ids = sorted(d.id for d in dead)
        retried: list[int] = []
        with progress(len(ids), "retrying dead letters") as bar:
            for chunk in _chunks(ids):  # one commit each, so the bar moves
                retried += await store.apply_one(RetryDead(chunk, wall(), origin=origin()))
                bar.advance(len(chunk))
    return retried, ids


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def cmd_dlq_purge(args: argparse.Namespace, cfg: Config) -> int:
    chosen = sum((bool(args.ids), bool(args.all), args.older_than is not None))
    if chosen != 1:
        raise CliError("give dead-letter ids, --all or --older-than (exactly one)", code=2)
    op = PurgeDead(
        ids=list(args.ids) if args.ids else None,
        before=wall() - args.older_than if args.older_than is not None else None,
    )
    n, missing = anyio.run(_purge, cfg, op)
    if args.json:
        emit_json({"purged": n, **({"not_dead": missing} if args.ids else {})})
    else:
        print(f"purged {n} dead letter(s)")
    if missing:  # as for retry: an id that is not a dead letter fails the command
        raise CliError(f"not dead letters: {', '.join(map(str, missing))}")
    return 0


async def _purge(cfg: Config, op: PurgeDead) -> tuple[int, list[int]]:
    """(how many were purged, the given ids that were not dead letters)."""
    async with open_store(cfg, create=False) as store:
        missing: list[int] = []
        for i in op.ids or ():
            d = await store.dispatch(i)
            if d is None or d.status != "dead":
                missing.append(i)
        if op.ids is not None or op.before is not None:
            n: int = await store.apply_one(op)
            return n, missing
        dead = sorted(d.id for d in await store.dispatches(status="dead", limit=_MANY))
        n = 0
        with progress(len(dead), "purging dead letters") as bar:
            for chunk in _chunks(dead):
                n += await store.apply_one(PurgeDead(ids=chunk))
                bar.advance(len(chunk))
        n += await store.apply_one(PurgeDead())  # any dead-lettered since the listing
    return n, missing
