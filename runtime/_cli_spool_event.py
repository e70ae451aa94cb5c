"""``spool enqueue``'s input as an OpenClaw spool event v1: the argparse types of its
flags, and the event built from ``--message`` or ``--file`` plus the flags.

``--file`` may hold a full event (``id`` + ``createdAt`` + ``createdAtMs``: validated and
written as is; a flag given with it is refused: the file is the whole event), a
create request (``version`` + ``payload``) or a bare payload (``kind: agentTurn`` +
``message``); the payload flags (``--agent`` …) and event flags (``--priority`` …) then
set those fields over the file's. The event is validated as the watcher will validate
it (``formats.openclaw_problem``), so a bad one exits 2 and nothing is written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from shepherd.actors.spool import formats
from shepherd.runtime._cli_fmt import CliError
from shepherd.runtime._cli_store import NotUnicode, loads_json
from shepherd.runtime.config import read_text
from shepherd.store.errors import ConfigError

__all__ = ["event_from_args", "expires_in", "retries"]

_EXPIRES = re.compile(r"^\d+(\.\d+)?(ms|s|m|h|d)$")  # OpenClaw's --expires-in syntax
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def expires_in(text: str) -> float:
    m = _EXPIRES.match(text.strip())
    if not m or (seconds := float(text.strip()[: m.start(2)]) * _UNIT[m.group(2)]) <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}; use a positive number with a unit: 500ms, 30s, 5m, 2h, 1d"
        )
    return seconds


def retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= formats.MAX_RETRIES:
        raise argparse.ArgumentTypeError(f"must be 0-{formats.MAX_RETRIES}, got {value}")
    return value


def event_from_args(args: argparse.Namespace, now: float) -> dict[str, Any]:
    """The event to write: from the flags, or from ``--file`` completed by them."""
    flags = _payload_flags(args)
    if args.file is None:
        request: dict[str, Any] = {"version": 1, "payload": {"kind": "agentTurn"}}
        request["payload"].update(flags, message=args.message)
    else:
        data = _read_file(args.file)
        if formats.is_full_event(data):
            given = [f for f in _FLAGS if _given(getattr(args, f.replace("-", "_")))]
            if given:
                raise CliError(f"--{given[0]}: the file holds a full event; edit the file", 2)
            return _checked(data, "--file")
        request = data if "payload" in data else {"version": 1, "payload": data}
        if isinstance(old := request.get("payload"), dict):
            if isinstance(old.get("delivery"), dict) and "delivery" in flags:
                flags["delivery"] = {**old["delivery"], **flags["delivery"]}
            request = {**request, "payload": {**old, **flags}}
    if args.priority is not None:
        request["priority"] = args.priority
    if args.max_retries is not None:
        request["maxRetries"] = args.max_retries
    if args.expires_in is not None:
        request["expiresAt"] = formats.iso_ms(now + args.expires_in)
    return _checked(formats.build_event(request, now), "--file" if args.file else "--message")


_PAYLOAD_FLAGS = {"agent": "agentId", "session": "sessionKey", "model": "model"}


_FLAGS = (*_PAYLOAD_FLAGS, "thinking", "deliver", "channel", "to")
_FLAGS += ("priority", "max-retries", "expires-in")


def _given(value: Any) -> bool:
    return value is not None and value is not False  # --max-retries 0 is given


def _payload_flags(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: getattr(args, flag) for flag, key in _PAYLOAD_FLAGS.items() if getattr(args, flag)
    }
    if args.thinking:
        out["thinking"] = args.thinking
    delivery = {"enabled": True} if args.deliver else {}
    delivery.update({k: v for k, v in (("channel", args.channel), ("to", args.to)) if v})
    if delivery:
        out["delivery"] = delivery
    return out


def _read_file(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else read_text(Path(name), field="--file")
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None
    except (OSError, UnicodeDecodeError) as exc:  # standard input
        raise CliError(f"--file: cannot read standard input: {exc}", 2) from None
    try:
        data = loads_json(text)
    except NotUnicode as exc:
        raise CliError(f"--file: {name!r} {exc}", 2) from None
    except ValueError as exc:
        raise CliError(f"--file: {name!r} is not JSON ({exc})", 2) from None
    if not isinstance(data, dict):
        raise CliError(f"--file: expected a JSON object, got {type(data).__name__}", 2)
    return data


def _checked(event: dict[str, Any], flag: str) -> dict[str, Any]:
    """The event, validated as the watcher will validate it (an invalid one exits 2)."""
    problem = formats.openclaw_problem(event)
    if problem is not None:
        raise CliError(f"{flag}: not a valid spool event: {problem}", 2)
    return event
