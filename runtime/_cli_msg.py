"""``shepherd msg ...``: inbox messages from the command line, as OCS's ``msg``.

    msg send --from A --to B [--kind K] [--subject S] [--priority P] [--reply-to ID]
             [--expires-in DUR] (BODY | --file F)      prints the message id
    msg inbox AGENT [--all] [--limit N]     pending messages (--all: every state), in
                                            OCS inbox order
    msg read ID...                          pending / delivered → read
    msg ack ID...                           acknowledged (and read if not yet)
    msg thread ID                           the conversation ID belongs to

A ``--kind spawn`` message's body is a job spec (README "Spawn messages"): the command
validates it with this machine's executors (``--app`` for python targets) and commits
the message with its one-shot job, or the message as ``failed`` with the error (exit
1, the error on stderr); then it wakes the daemon (``jd``). Bad flags exit 2 naming the
flag, nothing stored; an unknown message id exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._cli_fmt import CliError, emit_json, human, print_fields, table
from shepherd.runtime._cli_store import (
    builtin_executors,
    duration,
    not_unicode,
    open_store,
    origin,
    positive_int,
    row_id,
    wall,
)
from shepherd.runtime.config import Config
from shepherd.runtime.messaging import new_message
from shepherd.runtime.spawn import spawn_op
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import MESSAGE_KINDS, MESSAGE_STATES, Message
from shepherd.store.ops import InsertMessages, MarkMessages, NewMessage, Spawned

__all__ = ["add_msg_commands"]

_PRIORITIES = {"normal": 0, "high": 1, "urgent": 2, "0": 0, "1": 1, "2": 2}
_FLAGS = {
    "from_agent": "--from", "to_agent": "--to", "body": "BODY", "kind": "--kind",
    "priority": "--priority", "expires_in": "--expires-in",
}  # fmt: skip
_COLUMNS = ("id", "from", "to", "kind", "priority", "status", "subject", "body", "created")


def _priority(text: str) -> int:
    try:
        return _PRIORITIES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected normal, high or urgent (or 0, 1, 2), got {text!r}"
        ) from None


def add_msg_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``msg`` group in ``build_parser`` (``cmd`` adds one command)."""
    msg = sub.add_parser("msg", help="inbox messages between agents").add_subparsers(
        dest="msg_command", required=True, metavar="ACTION"
    )
    p = cmd(msg, "send", cmd_send, "put a message in an agent's inbox; prints its id")
    p.add_argument("body", nargs="?", metavar="BODY")
    p.add_argument("--file", "-f", metavar="FILE", help="read the body from FILE (- = stdin)")
    p.add_argument("--from", dest="from_agent", required=True, metavar="AGENT")
    p.add_argument("--to", dest="to_agent", required=True, metavar="AGENT", help="or broadcast")
    p.add_argument("--kind", default="text", choices=MESSAGE_KINDS)
    p.add_argument("--subject", metavar="TEXT")
    p.add_argument("--priority", type=_priority, default=0, metavar="P",
                   help="normal (default), high or urgent")  # fmt: skip
    p.add_argument("--reply-to", type=row_id, metavar="ID", help="the message answered")
    p.add_argument("--expires-in", type=duration, metavar="DUR", help="expire after DUR")
    p = cmd(msg, "inbox", cmd_inbox, "an agent's messages in inbox order (default: pending)")
    p.add_argument("agent", metavar="AGENT")
    p.add_argument("--all", action="store_true", help="every state, not only pending")
    p.add_argument("--limit", type=positive_int, default=100)
    p = cmd(msg, "read", cmd_read, "mark messages read")
    p.add_argument("ids", type=row_id, nargs="+", metavar="ID")
    p = cmd(msg, "ack", cmd_ack, "acknowledge messages (read if not yet)")
    p.add_argument("ids", type=row_id, nargs="+", metavar="ID")
    p = cmd(msg, "thread", cmd_thread, "the conversation a message belongs to")
    p.add_argument("message_id", type=row_id, metavar="ID")


def _row(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = human(m)
    out.update({"from": m.from_agent, "to": m.to_agent, "created": out["created_at"]})
    if m.status == "failed" and m.last_error:
        out["body"] = f"[{m.last_error}] {m.body}"
    return out


def _body(args: argparse.Namespace) -> str:
    if (args.body is None) == (args.file is None):
        raise CliError("give the body as BODY or --file F (one of them)", code=2)
    if args.file is None:
        return str(args.body)
    try:
        if args.file == "-":
            text = sys.stdin.read()  # decoded as the locale says (perhaps surrogateescape)
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise CliError(f"--file {args.file}: {exc.strerror or exc}", code=2) from None
    except UnicodeDecodeError as exc:
        problem: str | None = f"is not valid UTF-8 (byte {exc.start}: {exc.reason})"
    else:
        problem = not_unicode(text)
    if problem is not None:
        raise CliError(f"--file {args.file}: {problem}", code=2)
    return text


def cmd_send(args: argparse.Namespace, cfg: Config) -> int:
    body = _body(args)
    now = wall()
    try:
        row = new_message(
            args.from_agent, args.to_agent, body, now=now, kind=args.kind,
            subject=args.subject, priority=args.priority, expires_in=args.expires_in,
            reply_to=args.reply_to,
        )  # fmt: skip
    except ConfigError as exc:  # name the flag
        field = _FLAGS.get(exc.field or "", exc.field)
        raise ConfigError(str(exc).removeprefix(f"{exc.field}: "), field=field) from None
    msg_id, spawned = anyio.run(_send, cfg, row, now)
    if spawned is not None and spawned.status == "delivered":
        send_wake(cfg.database, "jd")
    if args.json:
        out: dict[str, Any] = {"id": msg_id, "status": "pending"}
        if spawned is not None:
            out.update(status=spawned.status, error=spawned.error, job=spawned.job_name,
                       dispatch_id=spawned.dispatch_id)  # fmt: skip
        emit_json(out)
    elif spawned is not None and spawned.status == "delivered":
        print(f"{msg_id} (spawned job {spawned.job_name}, dispatch {spawned.dispatch_id})")
    elif spawned is None:
        print(msg_id)
    if spawned is not None and spawned.status == "failed":
        raise CliError(f"spawn message {msg_id} failed: {spawned.error}", code=1)
    return 0


async def _send(cfg: Config, row: NewMessage, now: float) -> tuple[int, Spawned | None]:
    executors = builtin_executors(cfg) if row.kind == "spawn" else None
    async with open_store(cfg) as store:
        if row.reply_to is not None and await store.message(row.reply_to) is None:
            raise ConfigError(f"no message {row.reply_to}", field="--reply-to")
        if executors is not None:
            done: Spawned = await store.apply_one(spawn_op(executors, now, origin(), message=row))
            return done.message_id, done
        [msg_id] = await store.apply_one(InsertMessages([row], now))
        return int(msg_id), None


def cmd_inbox(args: argparse.Namespace, cfg: Config) -> int:
    statuses = MESSAGE_STATES if args.all else ("pending",)
    messages = anyio.run(_inbox, cfg, args.agent, statuses, args.limit)
    if args.json:
        emit_json(messages)
    else:
        table([_row(m) for m in messages], _COLUMNS)
    return 0


async def _inbox(cfg: Config, agent: str, statuses: tuple[str, ...], limit: int) -> list[Message]:
    async with open_store(cfg, create=False) as store:
        return await store.inbox(agent, statuses=statuses, limit=limit, now=wall())


def cmd_read(args: argparse.Namespace, cfg: Config) -> int:
    return _mark(args, cfg, "read")


def cmd_ack(args: argparse.Namespace, cfg: Config) -> int:
    return _mark(args, cfg, "ack")


def _mark(args: argparse.Namespace, cfg: Config, status: str) -> int:
    changed = anyio.run(_apply_mark, cfg, list(dict.fromkeys(args.ids)), status)
    if args.json:
        emit_json({"ids": args.ids, status: changed})
    else:
        print(f"{changed} message(s) {'marked read' if status == 'read' else 'acknowledged'}")
    return 0


async def _apply_mark(cfg: Config, ids: Sequence[int], status: str) -> int:
    async with open_store(cfg, create=False) as store:
        for msg_id in ids:  # every id must exist: nothing is marked otherwise
            if await store.message(msg_id) is None:
                raise NotFound(f"no message {msg_id}")
        return int(await store.apply_one(MarkMessages(list(ids), status, wall())))


def cmd_thread(args: argparse.Namespace, cfg: Config) -> int:
    messages = anyio.run(_thread, cfg, args.message_id)
    if args.json:
        emit_json(messages)
        return 0
    for m in messages:
        head = f"#{m.id} {m.from_agent} → {m.to_agent} [{m.kind}, {m.status}]"
        fields: dict[str, Any] = {"message": head, "at": human(m)["created_at"]}
        if m.reply_to is not None:
            fields["reply to"] = f"#{m.reply_to}"
        if m.subject:
            fields["subject"] = m.subject
        if m.last_error:
            fields["error"] = m.last_error
        fields["body"] = m.body
        print_fields(fields)
        print()
    return 0


async def _thread(cfg: Config, message_id: int) -> list[Message]:
    async with open_store(cfg, create=False) as store:
        if await store.message(message_id) is None:
            raise NotFound(f"no message {message_id}")
        return await store.thread(message_id)
