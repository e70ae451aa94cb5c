"""``shepherd --url URL ...``: the commands that work against a remote daemon's REST API
(``runtime.client``) instead of a database file, with the local commands' output.

    status, enqueue, cancel, runs list, runs show, dlq list / retry / purge,
    approvals list / approve / reject

The token is ``--token`` or ``SHEPHERD_TOKEN``. Any other command with ``--url`` exits 2
naming ``--url``. The API's errors exit as the local ones do (not found, conflict: 1;
a field refused: 2); a daemon that cannot be reached, or refuses the token, exits 1.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from shepherd.runtime import _cli_approvals as appr
from shepherd.runtime import _cli_enqueue
from shepherd.runtime import _cli_ops as ops
from shepherd.runtime._cli_fmt import CliError, emit_json, table
from shepherd.runtime._cli_status import cmd_status, show_status
from shepherd.runtime.client import ApiError, Client
from shepherd.store.errors import ConfigError

__all__ = ["run_remote"]

Remote = Callable[[argparse.Namespace, Client], Awaitable[int]]
_PAGE = 500  # the API's largest page


def run_remote(args: argparse.Namespace) -> int:
    """Run the command of ``args`` against ``args.url``; exit code as the local one's."""
    command = args.func.resolve() if hasattr(args.func, "resolve") else args.func  # cli.Lazy
    fn = _REMOTE.get(command)
    if fn is None:
        raise CliError(f"{_command(args)!r} does not work with --url (a remote daemon): "
                       "run it where the database is, without --url", code=2)  # fmt: skip
    token = getattr(args, "token", None) or os.environ.get("SHEPHERD_TOKEN") or None

    async def go() -> int:
        async with Client(args.url, token=token) as client:
            return await fn(args, client)

    try:
        return anyio.run(go)
    except httpx.HTTPError as exc:
        raise CliError(f"--url {args.url}: {type(exc).__name__}: {exc}") from None
    except ApiError as exc:
        raise CliError(f"--url {args.url}: {exc.message} (HTTP {exc.status})") from None


def _command(args: argparse.Namespace) -> str:
    words = [args.command]
    for key, value in vars(args).items():
        if key.endswith("_command") and key != "command" and isinstance(value, str):
            words.append(value)
    return " ".join(words)


async def _all(fetch: Callable[[str | None, int], Awaitable[Any]], limit: int) -> list[Any]:
    """Up to ``limit`` items over as many pages as it takes."""
    out: list[Any] = []
    cursor: str | None = None
    while len(out) < limit:
        page = await fetch(cursor, min(_PAGE, limit - len(out)))
        out.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    return out


# -- the commands ------------------------------------------------------------------------


async def _status(args: argparse.Namespace, c: Client) -> int:
    got = await c.status()
    data = {k: v for k, v in got.items() if k not in ("extra", "breakers", "actors")}
    data.update(got.get("extra") or {})
    return show_status(args, data)


async def _enqueue(args: argparse.Namespace, c: Client) -> int:
    if args.delay is not None and args.not_before is not None:
        raise CliError("--delay and --not-before exclude each other", code=2)
    caps = args.capabilities.split(",") if args.capabilities is not None else None
    body = {
        "job": args.job, "payload": args.payload, "priority": args.priority,
        "not_before": args.not_before, "delay": args.delay, "expires_in": args.expires_in,
        "max_attempts": args.max_attempts, "idempotency_key": args.idempotency_key,
        "capabilities": caps, "owner": args.owner,
    }  # fmt: skip
    try:
        got = await c.request(
            "POST", "/dispatches", json={k: v for k, v in body.items() if v is not None}
        )
    except ConfigError as exc:  # name the flag, as the local command does
        flagged = _cli_enqueue.as_flag(exc)
        if flagged is None:
            raise
        raise flagged from None
    dispatch_id, duplicate = int(got["id"]), bool(got.get("duplicate"))
    if args.json:
        emit_json({"id": dispatch_id, "job": args.job, "duplicate": duplicate})
    elif duplicate:
        print(f"{dispatch_id} (the existing dispatch of idempotency key {args.idempotency_key!r})")
    else:
        print(dispatch_id)
    return 0


async def _cancel(args: argparse.Namespace, c: Client) -> int:
    result = await c.cancel(args.dispatch_id, cascade=bool(getattr(args, "cascade", False)))
    if args.json:
        emit_json({"id": args.dispatch_id, "result": result})
    else:
        what = "running: cancel requested" if result == "cancel_requested" else "cancelled"
        print(f"dispatch {args.dispatch_id} {what}")
    return 0


async def _runs_list(args: argparse.Namespace, c: Client) -> int:
    runs = await _all(
        lambda cur, n: c.runs(job=args.job, state=args.status, limit=n, cursor=cur), args.limit
    )
    if args.json:
        emit_json(runs)
        return 0
    table(
        [ops.run_row(r) for r in runs],
        ("id", "dispatch", "job", "attempt", "status", "started", "took", "exit", "error"),
    )
    return 0


async def _runs_show(args: argparse.Namespace, c: Client) -> int:
    return ops.show_run(args, await c.run(args.run_id))


async def _dlq_list(args: argparse.Namespace, c: Client) -> int:
    dead = await _all(lambda cur, n: c.dead_letters(job=args.job, limit=n, cursor=cur), args.limit)
    if args.json:
        emit_json(dead)
        return 0
    table(
        [ops.dead_row(d) for d in dead],
        ("id", "job", "attempts", "reason", "outcome", "died", "error"),
    )
    return 0


async def _dlq_retry(args: argparse.Namespace, c: Client) -> int:
    if bool(args.ids) == bool(args.all):
        raise CliError("give dead-letter ids or --all (not both)", code=2)
    if args.all:
        retried = await c.retry_dead(all=True, job=args.job)
    else:
        retried = await c.retry_dead(args.ids)
    missing = [i for i in args.ids if i not in set(retried)]
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


async def _dlq_purge(args: argparse.Namespace, c: Client) -> int:
    chosen = sum((bool(args.ids), bool(args.all), args.older_than is not None))
    if chosen != 1:
        raise CliError("give dead-letter ids, --all or --older-than (exactly one)", code=2)
    got = await c.request(
        "POST", "/dead/purge",
        json={"ids": list(args.ids) or None, "all": bool(args.all), "older_than": args.older_than},
    )  # fmt: skip
    missing = [int(i) for i in got.get("not_found", [])]
    if args.json:
        emit_json({"purged": got["count"], **({"not_dead": missing} if args.ids else {})})
    else:
        print(f"purged {got['count']} dead letter(s)")
    if missing:
        raise CliError(f"not dead letters: {', '.join(map(str, missing))}")
    return 0


async def _approvals_list(args: argparse.Namespace, c: Client) -> int:
    found = await c.approvals(args.status, args.job, limit=min(args.limit, _PAGE))
    if args.json:
        emit_json(found)
        return 0
    cols = ("id", "job", "dispatch", "kind", "status", "requested", "deadline", "then", "by")
    table([appr.approval_row(a) for a in found], (*cols, "reason"))
    return 0


async def _approve(args: argparse.Namespace, c: Client) -> int:
    a = await c.approve(args.approval_id, by=args.by)
    if args.json:
        emit_json({"approval": a, "dispatch": a.dispatch_id, "status": a.status})
    else:
        print(f"approval {a.id} approved: dispatch {a.dispatch_id} queued")
    return 0


async def _reject(args: argparse.Namespace, c: Client) -> int:
    a = await c.reject(args.approval_id, args.reason, by=args.by)
    if args.json:
        emit_json({"approval": a, "dispatch": a.dispatch_id, "status": a.status})
    else:
        print(f"approval {a.id} rejected: dispatch {a.dispatch_id} cancelled")
    return 0


_REMOTE: dict[Callable[..., int], Remote] = {
    cmd_status: _status,
    _cli_enqueue.cmd_enqueue: _enqueue,
    ops.cmd_cancel: _cancel,
    ops.cmd_runs_list: _runs_list,
    ops.cmd_runs_show: _runs_show,
    ops.cmd_dlq_list: _dlq_list,
    ops.cmd_dlq_retry: _dlq_retry,
    ops.cmd_dlq_purge: _dlq_purge,
    appr.cmd_list: _approvals_list,
    appr.cmd_approve: _approve,
    appr.cmd_reject: _reject,
}
