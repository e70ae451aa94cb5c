"""The flags of ``jobs add`` / ``jobs update``, generated from the fields of ``JobSpec``
and ``RetryPolicy``, so that every field of a job has a flag and a new field gets one.

A field ``max_queued`` is ``--max-queued``; a retry field is ``--retry-<field>``
(``--retry-factor``; ``--max-attempts`` is also ``--retry-max-attempts``). The flag's
type follows the field's: a ``Literal`` gives choices, a duration takes ``30s`` / ``5m``,
a bool is ``--x`` / ``--no-x``, a dict is a JSON object, a list is comma-separated. An
optional field is cleared with the value ``none`` (``jobs update J --idle-timeout none``).
Announce delivery, which lives in ``options``, also has ``--delivery``, ``--delivery-to``
and ``--delivery-channel``. An approval gate is ``--approval`` (``--no-approval``
removes it) and ``--approval-<field>`` (``--approval-timeout 30m``; one implies
``--approval``). Bounds are checked by ``validate_job``; its errors are
reported naming the flag (:data:`FLAGS`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import msgspec

from shepherd.actors.executors.output import DELIVERY_MODES
from shepherd.runtime._cli_store import duration, json_object
from shepherd.store.models import ApprovalPolicy, JobSpec, RetryPolicy, Seconds

__all__ = ["CLEAR", "FLAGS", "add_job_flags", "any_job_flag", "flag_data"]

CLEAR: Any = msgspec.UNSET  # "none" given for an optional field: set it to null

_HELP = {
    "executor": "python (default), shell, agent, event or watchdog (see README)",
    "target": "shell: the command; python: the registered target; agent: agent id",
    "payload": "default payload, a JSON object",
    "description": "free text shown by `jobs show`",
    "cron": "cron expression (five fields or @daily...)",
    "tz": "IANA time zone of --cron / --at (the job's zone)",
    "at": "one shot: ISO 8601 instant or 'in 10m'",
    "every": "fixed interval, e.g. 5m",
    "misfire": "missed slots: skip (default), run_once, run_all",
    "catch_up_window": "run_all: how far back missed slots still run (default 1h)",
    "delete_after_run": "a one-shot job is deleted after its run (not just disabled)",
    "priority": "default priority of its dispatches",
    "timeout": "absolute deadline of a run (default 5m)",
    "idle_timeout": "a run with no activity for this long ends 'timeout'",
    "expires_in": "dead-letter a dispatch not started within this long",
    "overlap": "when a run is still running: skip, queue, allow (default), replace",
    "max_queued": "overlap=queue: at most this many waiting (default 25)",
    "pool": "a named resource pool shared across jobs",
    "delivery_guarantee": "at-most-once (default) or at-least-once",
    "capabilities": "requirements: capabilities a runner must have, comma-separated",
    "parent": "chains: the parent job whose runs fire this one (see README, Chains)",
    "trigger_on": "chains: fire on the parent's success, failure (retries exhausted) or both",
    "trigger_condition": "chains: only if the parent's output matches contains:TEXT / regex:RE",
    "trigger_delay": "chains: start this long after the parent's run ends (default 0)",
    "max_fanout": "chains: at most this many children fire per run of this job (default 25)",
    "rate": "rate limit of its admissions: N/s, N/m or N/h, e.g. 10/s (README, Rate limits)",
    "burst": "with --rate: how many may start at once from a full bucket (default: N)",
    "options": "executor options, a JSON object (only the executor's keys)",
    "max_attempts": "attempts in all, 1-1000 (default 3)",
    "base": "first retry delay (default 30s)",
    "factor": "backoff multiplier, 1-100 (default 2)",
    "max_delay": "longest retry delay (default 1h)",
    "jitter": "spread of each delay, a fraction 0-1 (default 0)",
    "approval.timeout": "an approval not decided within this long times out (default 1h)",
    "approval.on_timeout": "at the timeout: reject (default) or approve",
    "approval.max_pending": "at most this many pending; more are cancelled (default 10)",
    "approval.sources": "dispatch kinds gated (default: all but run_now), comma-separated",
}
_METAVARS = {
    "executor": "NAME", "cron": "EXPR", "tz": "ZONE", "at": "ISO", "pool": "NAME", "rate": "N/UNIT",
}  # fmt: skip
_ALIASES = {"delivery_guarantee": ["--guarantee"], "retry.max_attempts": ["--max-attempts"]}
_DELIVERY = ("delivery", "delivery_to", "delivery_channel")  # options keys with flags

# spec field (as validate_job names it) -> the flag that sets it; filled below
FLAGS: dict[str, str] = {"name": "NAME", "schedule": "--cron/--at/--every"}


def _kinds(t: msgspec.inspect.Type) -> tuple[list[msgspec.inspect.Type], bool]:
    if isinstance(t, msgspec.inspect.UnionType):
        inner = [k for k in t.types if not isinstance(k, msgspec.inspect.NoneType)]
        return inner, len(inner) != len(t.types)
    return [t], False


def _nullable(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        return CLEAR if text.strip().lower() == "none" else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _one_of(names: list[str]) -> Callable[[str], str]:
    def choice(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(names)})"
            )
        return text

    return choice


def _comma_list(text: str) -> list[str]:
    """``a,b`` → ``["a", "b"]``; ``""`` → ``[]`` (``jobs update J --capabilities ''``
    clears them); an empty item (``a,,b``, ``,,``) is refused, as ``agents`` does."""
    if not text.strip():
        return []
    items = [w.strip() for w in text.split(",")]
    if "" in items:
        raise argparse.ArgumentTypeError(f"item {items.index('') + 1} is empty in {text!r}")
    return items


def _argument(t: msgspec.inspect.Type) -> dict[str, Any]:
    """argparse keywords for a field of type ``t``."""
    [kind, *_], optional = _kinds(t)
    kw: dict[str, Any]
    if isinstance(kind, msgspec.inspect.LiteralType):
        kw = {"choices": list(kind.values)}
        if optional:  # ``none`` clears it (``jobs update J --trigger-on none``)
            names = [str(v) for v in kind.values] + ["none"]
            kw = {"type": _nullable(_one_of(names)), "metavar": "{" + ",".join(names) + "}"}
        return kw
    if isinstance(kind, msgspec.inspect.BoolType):
        return {"action": argparse.BooleanOptionalAction}
    if getattr(kind, "cls", None) is Seconds:
        kw = {"type": duration, "metavar": "DUR"}
    elif isinstance(kind, msgspec.inspect.IntType):
        kw = {"type": int, "metavar": "N"}
    elif isinstance(kind, msgspec.inspect.FloatType):
        kw = {"type": float, "metavar": "X"}
    elif isinstance(kind, msgspec.inspect.DictType):
        kw = {"type": json_object, "metavar": "JSON"}
    elif isinstance(kind, msgspec.inspect.ListType):
        kw = {"type": _comma_list, "metavar": "A,B"}
    else:
        kw = {"metavar": "TEXT"}
    if optional:
        kw["type"] = _nullable(kw.get("type", str))
    return kw


def _fields(struct: type[msgspec.Struct]) -> list[msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return list(info.fields)


# (spec path, dest, option strings, argparse keywords), in the Struct's field order
_SPECS: list[tuple[str, str, list[str], dict[str, Any]]] = []
for _f in _fields(JobSpec):
    if _f.name in ("name", "retry", "enabled", "approval"):
        continue
    _SPECS.append(
        (_f.name, _f.name, [f"--{_f.name.replace('_', '-')}", *_ALIASES.get(_f.name, [])],
         _argument(_f.type))
    )  # fmt: skip
for _f in _fields(RetryPolicy):
    _path = f"retry.{_f.name}"
    _SPECS.append(
        (_path, f"retry_{_f.name}", [f"--retry-{_f.name.replace('_', '-')}",
         *_ALIASES.get(_path, [])], _argument(_f.type))
    )  # fmt: skip
for _f in _fields(ApprovalPolicy):  # --approval-timeout ...; --approval is ``required``
    if _f.name != "required":
        _SPECS.append(
            (f"approval.{_f.name}", f"approval_{_f.name}",
             [f"--approval-{_f.name.replace('_', '-')}"], _argument(_f.type))
        )  # fmt: skip
for _path, _dest, _opts, _kw in _SPECS:
    FLAGS[_path] = _opts[-1] if _path in _ALIASES else _opts[0]
for _key in _DELIVERY:
    FLAGS[f"options.{_key}"] = f"--{_key.replace('_', '-')}"
FLAGS["enabled"] = "--enabled/--disabled"
FLAGS["approval"] = FLAGS["approval.required"] = "--approval"


def add_job_flags(p: argparse.ArgumentParser) -> None:
    """Every job field as a flag (all default to "not given")."""
    group = p.add_argument_group("job fields (see README, Jobs)")
    for path, dest, opts, kw in _SPECS:
        key = path.rpartition(".")[2]
        if key in _METAVARS:
            kw = {**kw, "metavar": _METAVARS[key]}
        help = _HELP.get(path, _HELP.get(key))
        group.add_argument(*opts, dest=dest, default=None, help=help, **kw)
    state = group.add_mutually_exclusive_group()
    state.add_argument("--enabled", dest="enabled", action="store_const", const=True)
    state.add_argument(
        "--disabled", dest="enabled", action="store_const", const=False, help="no schedule"
    )
    group.add_argument("--delivery", choices=DELIVERY_MODES, help="announce a run's result")
    group.add_argument("--delivery-to", metavar="TARGET", help="an alias like @ops, or a target")
    group.add_argument("--delivery-channel", metavar="CHANNEL")
    group.add_argument(
        "--approval",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gate dispatches behind a human approval (--no-approval removes the gate)",
    )


def flag_data(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (builtins of a spec) with every job flag that was given laid over it."""
    data = dict(data)
    retry: dict[str, Any] = dict(data.get("retry") or {})
    approval: dict[str, Any] = {}
    for path, dest, _opts, _kw in _SPECS:
        value = getattr(args, dest, None)
        if value is None:
            continue
        value = None if value is CLEAR else value
        head, _, key = path.partition(".")
        if head == "approval":
            approval[key] = value
        elif key:
            retry[key] = value
        else:
            data[head] = value
    gate = getattr(args, "approval", None)
    if gate is False:
        data["approval"] = None
    elif gate or approval:  # an --approval-* flag implies the gate
        data["approval"] = {**(data.get("approval") or {}), "required": True, **approval}
    base = getattr(args, "retry_base", None)
    if base is not None and getattr(args, "retry_max_delay", None) is None:
        retry["max_delay"] = max(float(retry.get("max_delay", 3600.0)), base)
    if retry:
        data["retry"] = retry
    if getattr(args, "parent", None) is CLEAR:  # a child made a root: its trigger goes too
        for key in ("trigger_on", "trigger_condition", "trigger_delay"):
            if getattr(args, key, None) is None:
                data.pop(key, None)
    if getattr(args, "enabled", None) is not None:
        data["enabled"] = args.enabled
    given = {k: getattr(args, k) for k in _DELIVERY if getattr(args, k, None) is not None}
    if given:
        data["options"] = {**(data.get("options") or {}), **given}
    return data


def any_job_flag(args: argparse.Namespace) -> bool:
    """Whether a job field was given a flag (``jobs update`` with none changes nothing)."""
    dests = [dest for _path, dest, _opts, _kw in _SPECS] + ["approval", "enabled", *_DELIVERY]
    return any(getattr(args, dest, None) is not None for dest in dests)
