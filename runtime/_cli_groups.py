"""``shepherd groups ...``: task groups (OCS's task tracker) from the command line.

    groups create NAME --members a,b,c [--timeout DUR] [--heartbeat-window DUR]
                  [--to TARGET] [--channel C] [--created-by WHO]       prints its id
    groups report GROUP MEMBER started|completed|failed [--message TEXT]
    groups heartbeat GROUP MEMBER
    groups list [--status open|completed|failed] [--limit N]
    groups show GROUP                      members, deadlines, the summary

GROUP is a name (the open group of that name, else the newest) or an id. Each command
checks its input as the API does (``runtime/_groups_api.py``: bad input exits 2
naming the field, nothing stored; an unknown group exits 1), writes directly and
wakes the daemon (``g``), whose ``groups`` actor re-reads the group, times members
out and has the router send a summary the write queued.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._cli_enqueue import as_flag
from shepherd.runtime._cli_fmt import emit_json, human, human_duration, print_fields, table, when
from shepherd.runtime._cli_store import duration, id_or_name, open_store, positive_int, wall
from shepherd.runtime._groups_api import (
    DEFAULT_TIMEOUT,
    REPORTS,
    create_op,
    report_error,
    report_op,
)
from shepherd.runtime.config import Config
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import GROUP_STATES, TaskGroup
from shepherd.store.ops import Reported
from shepherd.store.ops.groups import member_deadline
from shepherd.store.protocol import Store

__all__ = ["add_groups_commands"]

_FLAGS = {
    "members": "--members", "timeout": "--timeout", "heartbeat_window": "--heartbeat-window",
    "to": "--to", "channel": "--channel", "created_by": "--created-by", "name": "NAME",
}  # fmt: skip


def add_groups_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``groups`` group in ``build_parser`` (``cmd`` adds one command)."""
    groups = sub.add_parser("groups", help="task groups (a dead-man switch)").add_subparsers(
        dest="groups_command", required=True, metavar="ACTION"
    )
    p = cmd(groups, "create", cmd_create, "a group of expected members; prints its id")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--members", required=True, metavar="A,B,C", help="member labels")
    p.add_argument("--timeout", type=duration, default=DEFAULT_TIMEOUT, metavar="DUR",
                   help="silent members are dead after this (default 10m)")  # fmt: skip
    p.add_argument("--heartbeat-window", type=duration, metavar="DUR",
                   help="a heartbeat this recent keeps a member alive"
                   " (default min(timeout, 5m))")  # fmt: skip
    p.add_argument("--to", metavar="TARGET", help="where the summary goes (an alias: @ops)")
    p.add_argument("--channel", metavar="CHANNEL")
    p.add_argument("--created-by", metavar="WHO")
    p = cmd(groups, "report", cmd_report, "a member reports started, completed or failed")
    p.add_argument("group", type=id_or_name, metavar="GROUP")
    p.add_argument("member", metavar="MEMBER")
    p.add_argument("status", metavar="STATUS", help=", ".join(REPORTS))
    p.add_argument("--message", "-m", metavar="TEXT", help="the result, or the error")
    p = cmd(groups, "heartbeat", cmd_heartbeat, "a member is alive")
    p.add_argument("group", type=id_or_name, metavar="GROUP")
    p.add_argument("member", metavar="MEMBER")
    p = cmd(groups, "list", cmd_list, "task groups, newest first")
    p.add_argument("--status", choices=GROUP_STATES)
    p.add_argument("--limit", type=positive_int, default=50)
    p = cmd(groups, "show", cmd_show, "one group: members, deadlines, summary")
    p.add_argument("group", type=id_or_name, metavar="GROUP")


async def _group(store: Store, ref: str | int) -> TaskGroup:
    found = await store.task_group(ref)
    if found is None:
        raise NotFound(f"group: no task group {str(ref)!r}")
    return found


def _out(args: argparse.Namespace, group: TaskGroup) -> None:
    if args.json:
        emit_json(group)
        return
    ok = sum(1 for m in group.members if m.status == "completed")
    print(f"group {group.name} (#{group.id}) {group.status}: {ok}/{len(group.members)} ok")


def cmd_create(args: argparse.Namespace, cfg: Config) -> int:
    members = [m.strip() for m in args.members.split(",")] if args.members.strip() else []
    try:
        op = create_op(
            args.name, members, now=wall(), delivery=cfg.delivery, timeout=args.timeout,
            heartbeat_window=args.heartbeat_window, to=args.to, channel=args.channel,
            created_by=args.created_by,
        )  # fmt: skip
    except ConfigError as exc:  # name the flag
        raise (as_flag(exc, _FLAGS) or exc) from None

    async def create() -> TaskGroup:
        async with open_store(cfg) as store:
            group_id = int(await store.apply_one(op))
            if group_id == 0:
                raise ConfigError(f"an open task group named {args.name!r} exists", field="NAME")
            return await _group(store, group_id)

    group = anyio.run(create)
    send_wake(cfg.database, "g")
    if args.json:
        emit_json(group)
    else:
        print(group.id)
    return 0


def cmd_report(args: argparse.Namespace, cfg: Config) -> int:
    return _report(args, cfg, args.status, args.message)


def cmd_heartbeat(args: argparse.Namespace, cfg: Config) -> int:
    return _report(args, cfg, "heartbeat", None)


def _report(args: argparse.Namespace, cfg: Config, report: str, message: str | None) -> int:
    op = report_op(
        args.group, args.member, report, now=wall(), message=message,
        max_attempts=cfg.delivery.max_attempts,
    )  # fmt: skip

    async def write() -> TaskGroup:
        async with open_store(cfg, create=False) as store:
            result: Reported = await store.apply_one(op)
            report_error(result, str(args.group), args.member)
            assert result.group_id is not None  # report_error raised unless "ok"
            return await _group(store, result.group_id)

    group = anyio.run(write)
    send_wake(cfg.database, "g")
    _out(args, group)
    return 0


def cmd_list(args: argparse.Namespace, cfg: Config) -> int:
    async def read() -> list[TaskGroup]:
        async with open_store(cfg, create=False) as store:
            return await store.task_groups(status=args.status, limit=args.limit)

    groups = anyio.run(read)
    if args.json:
        emit_json(groups)
        return 0
    rows = []
    for g in groups:
        counts: dict[str, int] = {}
        for m in g.members:
            counts[m.status] = counts.get(m.status, 0) + 1
        rows.append({
            "id": g.id, "name": g.name, "status": g.status,
            "members": " ".join(f"{k} {v}" for k, v in counts.items()),
            "timeout": human_duration(g.timeout), "created": when(g.created_at),
            "to": g.delivery_to or g.delivery_channel,
        })  # fmt: skip
    table(rows, ("id", "name", "status", "members", "timeout", "to", "created"))
    return 0


def cmd_show(args: argparse.Namespace, cfg: Config) -> int:
    async def read() -> TaskGroup:
        async with open_store(cfg, create=False) as store:
            return await _group(store, args.group)

    g = anyio.run(read)
    if args.json:
        emit_json(g)
        return 0
    print_fields({
        "group": f"{g.name} (#{g.id})", "status": g.status, "created": when(g.created_at),
        "timeout": human_duration(g.timeout),
        "heartbeat window": human_duration(g.heartbeat_window),
        "to": g.delivery_to or g.delivery_channel, "summary": g.summary,
        "delivery": g.delivery_id,
    })  # fmt: skip
    print()
    rows = []
    for m in g.members:
        row = human(m)
        row["dead at"] = when(member_deadline(g, m))
        row["heartbeat"] = when(m.last_heartbeat)
        row["note"] = m.error or m.message
        rows.append(row)
    table(rows, ("label", "status", "heartbeat", "dead at", "note"))
    return 0
