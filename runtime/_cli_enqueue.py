"""``shepherd enqueue``: through the daemon's enqueue socket when a daemon serves the
database (its group commit; the id printed once committed), else written directly
(``_cli_enqueue_direct``). The module imports little, so the command starts fast: the
direct path's store and checks are imported only when no daemon answers.

A request sent to the daemon carries an idempotency key (``--idempotency-key``, or a
generated ``cli:<uuid>``): if the daemon dies before it answers, the request may or may
not have been committed, and the direct write that follows with the same key finds the
committed dispatch or inserts it, so the job is queued exactly once either way."""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shepherd.runtime._cli_fmt import CliError, emit_json
from shepherd.runtime.producer import Disconnected, Producer
from shepherd.store.errors import ConfigError, ShepherdError

if TYPE_CHECKING:
    from shepherd.runtime.config import Config

__all__ = ["cmd_enqueue"]

# the request fields `enqueue` takes as flags: an error naming one names the flag
_FLAGS = {
    "delay",
    "not_before",
    "expires_in",
    "max_attempts",
    "idempotency_key",
    "capabilities",
    "owner",
    "priority",
}


def cmd_enqueue(args: argparse.Namespace, cfg: Config) -> int:
    if args.delay is not None and args.not_before is not None:
        raise CliError("--delay and --not-before exclude each other", code=2)
    producer = Producer(cfg.database)
    if not producer.connected():
        from shepherd.runtime._cli_enqueue_direct import cmd_enqueue as direct

        return direct(args, cfg)
    item: dict[str, Any] = {
        "job": args.job,
        "payload": args.payload,
        "priority": args.priority,
        "not_before": args.not_before,
        "delay": args.delay,
        "expires_in": args.expires_in,
        "max_attempts": args.max_attempts,
        "idempotency_key": args.idempotency_key or f"cli:{uuid.uuid4().hex}",
        "capabilities": args.capabilities.split(",") if args.capabilities is not None else None,
        "owner": args.owner,
    }
    try:
        with producer:
            [got] = producer.submit([{k: v for k, v in item.items() if v is not None}])
    except Disconnected:  # no answer: the direct write with the same key settles it
        from shepherd.runtime._cli_enqueue_direct import cmd_enqueue as direct

        args.key_generated = args.idempotency_key is None
        args.idempotency_key = item["idempotency_key"]
        return direct(args, cfg)
    if isinstance(got, ShepherdError):
        raise _flagged(got)
    dispatch_id, duplicate = got
    duplicate = duplicate and args.idempotency_key is not None  # a generated key: ours
    if args.json:
        emit_json({"id": dispatch_id, "job": args.job, "duplicate": duplicate})
    elif duplicate:
        print(f"{dispatch_id} (the existing dispatch of idempotency key {args.idempotency_key!r})")
    else:
        print(dispatch_id)
    return 0


def _flagged(exc: ShepherdError) -> ShepherdError:
    """A ``ConfigError`` naming a request field as the flag that set it, other fields
    as the direct path names them (``enqueue.job``)."""
    if not isinstance(exc, ConfigError) or exc.field is None:
        return exc
    flagged = as_flag(exc)
    return flagged if flagged is not None else exc


def as_flag(exc: ConfigError, flags: Mapping[str, str] | None = None) -> ConfigError | None:
    """``exc`` naming the flag that set its field, or None for a field no flag sets.
    ``flags`` maps fields to flags (``approval.sources`` → ``--approval-sources``); by
    default the enqueue flags. An item of a list flag is named by its value, which the
    message quotes, or else by its place (``capabilities[1]`` is ``--capabilities:
    item 2 is empty``); another part of a field, by its path in the message."""
    if exc.field is None:
        return None
    field = exc.field
    if flags is None:
        base = field.split(".", 1)[0].split("[", 1)[0]
        flag = "--" + base.replace("_", "-") if base in _FLAGS else None
    else:
        base = field.split("[", 1)[0]
        flag = flags.get(base)
    if flag is None:
        return None
    message = str(exc).removeprefix(f"{field}: ")
    if item := re.fullmatch(r"\[(\d+)\]", field[len(base) :]):
        if message.startswith("is "):  # "is empty": no value to quote
            message = f"item {int(item.group(1)) + 1} {message}"
    elif field != base:
        message = f"{field}: {message}"
    return ConfigError(message, field=flag)
