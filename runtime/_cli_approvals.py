"""``shepherd approvals ...``: approval requests from the command line.

    approvals list [--job J] [--status S] [--limit N]     newest first
    approvals approve ID [--by NAME]                      its dispatch is queued
    approvals reject ID --reason TEXT [--by NAME]         its dispatch is cancelled

A decision is one conditional op (``ResolveApproval``) on the database, so it works
with or without a daemon: an approved dispatch is queued and the daemon is woken
(``send_wake 'd'``); without one it runs when one starts. A rejection wakes it too
(``'a'``: its scheduler ends a fired one-shot job whose dispatch was cancelled). Of
two approvers one wins; the other exits 1 ("approval 7 is already approved by alice").
Bad input exits 2 naming the flag, nothing stored.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._approvals_api import check_decision, check_filter, outcome
from shepherd.runtime._cli_fmt import emit_json, table, when
from shepherd.runtime._cli_store import open_store, origin, positive_int, row_id, wall
from shepherd.runtime.config import Config
from shepherd.store.models import APPROVAL_STATES, Approval
from shepherd.store.ops import ResolveApproval, Resolved

__all__ = ["add_approvals_commands", "approval_row"]


def add_approvals_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``approvals`` group in ``build_parser`` (``cmd`` adds one command)."""
    group = sub.add_parser("approvals", help="approval requests of gated jobs").add_subparsers(
        dest="approvals_command", required=True, metavar="ACTION"
    )
    p = cmd(group, "list", cmd_list, "list approval requests, newest first")
    p.add_argument("--job")
    p.add_argument("--status", choices=APPROVAL_STATES)
    p.add_argument("--limit", type=positive_int, default=100)
    p = cmd(group, "approve", cmd_approve, "approve: the dispatch is queued and runs")
    p.add_argument("approval_id", type=row_id, metavar="ID")
    p.add_argument("--by", metavar="NAME", help="who approves (default: your user name)")
    p = cmd(group, "reject", cmd_reject, "reject: the dispatch is cancelled, never runs")
    p.add_argument("approval_id", type=row_id, metavar="ID")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (required)")
    p.add_argument("--by", metavar="NAME", help="who rejects (default: your user name)")


def approval_row(a: Approval) -> dict[str, Any]:
    return {
        "id": a.id,
        "job": a.job_name,
        "dispatch": a.dispatch_id,
        "kind": a.kind,
        "status": a.status,
        "requested": when(a.requested_at),
        "deadline": when(a.deadline),
        "then": a.on_timeout,
        "by": a.resolved_by or "",
        "reason": a.reason or "",
    }


def cmd_list(args: argparse.Namespace, cfg: Config) -> int:
    check_filter(args.status)

    async def read() -> list[Approval]:
        async with open_store(cfg, create=False) as store:
            return await store.approvals(status=args.status, job=args.job, limit=args.limit)

    found = anyio.run(read)
    if args.json:
        emit_json(found)
        return 0
    cols = ("id", "job", "dispatch", "kind", "status", "requested", "deadline", "then", "by")
    table([approval_row(a) for a in found], (*cols, "reason"))
    return 0


def _by(args: argparse.Namespace) -> str:
    if args.by is not None:
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return "operator"


def _decide(args: argparse.Namespace, cfg: Config, decision: str, reason: str | None) -> int:
    by = _by(args)
    check_decision(args.approval_id, by, reason, reject=decision == "reject")
    op = ResolveApproval(
        approval_id=args.approval_id,
        decision="approve" if decision == "approve" else "reject",
        now=wall(),
        origin=origin(),
        by=by,
        reason=reason,
    )

    async def apply() -> Resolved | None:
        async with open_store(cfg, create=False) as store:
            got: Resolved | None = await store.apply_one(op)
            return got

    got = outcome(args.approval_id, anyio.run(apply))
    # approved: its dispatch is queued; rejected: cancelled, the daemon's scheduler ends a
    # fired one-shot job whose dispatch it was
    send_wake(cfg.database, "da" if got.dispatch is not None else "a")
    a = got.approval
    if args.json:
        emit_json({"approval": a, "dispatch": a.dispatch_id, "status": a.status})
    elif got.dispatch is not None:
        print(f"approval {a.id} approved: dispatch {a.dispatch_id} queued")
    else:
        print(f"approval {a.id} rejected: dispatch {a.dispatch_id} cancelled")
    return 0


def cmd_approve(args: argparse.Namespace, cfg: Config) -> int:
    return _decide(args, cfg, "approve", None)


def cmd_reject(args: argparse.Namespace, cfg: Config) -> int:
    return _decide(args, cfg, "reject", args.reason)
