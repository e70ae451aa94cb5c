"""The ``python`` executor: runs an async callable registered by the embedding application.

``job.target`` names the callable. It receives the ``RunContext`` (payload, attempt,
idempotency key, ``heartbeat()``) and may return any msgspec-encodable value, which is
stored as the run's result (one nested deeper than ``store.bounds.MAX_DEPTH`` ends the
run an error: ``actors.run``). It is cancelled (``anyio`` cancellation) on timeout or when
an operator cancels the dispatch. Raising ``RetryAfter`` / ``Discard`` steers the retry.

A target may declare its payload type, a msgspec Struct (``register(name, fn,
payload=Report)``). Its ``ctx.payload`` is then that Struct, converted from the stored
JSON; an untyped target gets the dict. The runtime checks a typed payload when it is
enqueued (``check_payload``, the same conversion), so a payload that does not fit is
refused before it is stored; one that still does not fit when it runs (stored by a
process that did not know the type, or before the type changed) fails the run without
a retry, naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import msgspec

from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.executors.specs import check_python
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec

__all__ = ["PythonExecutor", "PythonTarget", "Target", "convert_payload"]

PythonTarget = Callable[[RunContext], Awaitable[Any]]

_AT = re.compile(r" - at `\$([^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `([^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`$")


class Target(NamedTuple):
    """One registered target: the callable and its payload type (None: a dict)."""

    fn: PythonTarget
    payload: type[msgspec.Struct] | None = None


def convert_payload(kind: type[msgspec.Struct], data: Any, *, field: str = "payload") -> Any:
    """``data`` (JSON-shaped builtins) as a ``kind``; a ConfigError names the field as
    msgspec's error path does (``payload.to: Expected str, got int``)."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = ""
        if m := _AT.search(text):
            path, text = m.group(1), text[: m.start()]
        if m := _MISSING.match(text):
            path, text = f"{path}.{m.group(1)}", "required field missing"
        elif m := _UNKNOWN.match(text):
            path, text = f"{path}.{m.group(1)}", "unknown field"
        raise ConfigError(text.replace("`", ""), field=field + path) from None


def check_payload_type(name: str, kind: Any) -> None:
    if kind is not None and not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
        raise ConfigError(
            f"the payload type of target {name!r} must be a msgspec.Struct class, got {kind!r}",
            field="payload",
        )


class PythonExecutor:
    name = "python"

    def __init__(self, *, app: str | None = None) -> None:
        # app: where a complete registry came from (``pkg.mod:targets``); when set, a job
        # naming a target it does not have is refused (the CLI's check with --app)
        self._targets: dict[str, Target] = {}
        self.app = app

    def register(
        self, name: str, fn: PythonTarget, *, payload: type[msgspec.Struct] | None = None
    ) -> None:
        if not name:
            raise ConfigError("a python target needs a name", field="target")
        if not callable(fn):
            raise ConfigError(f"{name!r} is not callable", field="target")
        check_payload_type(name, payload)
        self._targets[name] = Target(fn, payload)

    def registered(self, name: str) -> bool:
        return name in self._targets

    def payload_type(self, target: str) -> type[msgspec.Struct] | None:
        found = self._targets.get(target)
        return found.payload if found is not None else None

    def check_payload(self, spec: JobSpec, payload: Any, *, field: str = "payload") -> None:
        """Refuse ``payload`` (what a run of ``spec`` would get) if the target declares a
        type it does not fit. Nothing is checked for an untyped or unknown target."""
        kind = self.payload_type(spec.target or spec.name)
        if kind is not None:
            convert_payload(kind, payload, field=field)

    def validate(self, spec: JobSpec) -> None:
        check_python(spec)
        target = spec.target or spec.name
        if self.app is not None and target not in self._targets:
            known = ", ".join(sorted(self._targets)) or "none"
            raise ConfigError(
                f"no python target {target!r} in app {self.app!r} (it has: {known})",
                field="target",
            )
        # the default payload is what a scheduled run (or an enqueue without one) gets;
        # an empty one on an unscheduled job only means "no default"
        scheduled = spec.cron is not None or spec.every is not None or spec.at is not None
        if spec.payload or scheduled:
            self.check_payload(spec, spec.payload)

    async def execute(self, ctx: RunContext) -> ExecResult:
        name = ctx.job.target or ctx.job.name
        found = self._targets.get(name)
        if found is None:
            return ExecResult(
                ok=False,
                error=f"no python target registered as {name!r} in this process",
            )
        if found.payload is not None:
            try:
                ctx.payload = convert_payload(found.payload, ctx.payload)
            except ConfigError as exc:  # stored before the type was known: never fits
                return ExecResult(
                    ok=False,
                    retry=False,
                    error=f"payload does not fit {found.payload.__name__}: {exc}",
                )
        return ExecResult(ok=True, result=await found.fn(ctx))

    def __repr__(self) -> str:
        return f"<PythonExecutor {len(self._targets)} targets>"
