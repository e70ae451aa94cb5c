"""The ``python`` executor: runs an async callable registered by the embedding application.

``job.target`` names the callable. It receives the ``RunContext`` (payload, attempt,
idempotency key, ``heartbeat()``) and may return any msgspec-encodable value, which is
stored as the run's result. It is cancelled (``anyio`` cancellation) on timeout or when
an operator cancels the dispatch. Raising ``RetryAfter`` / ``Discard`` steers the retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.router.delivery import check_option_keys
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec

__all__ = ["PythonExecutor", "PythonTarget"]

PythonTarget = Callable[[RunContext], Awaitable[Any]]


class PythonExecutor:
    name = "python"

    def __init__(self) -> None:
        self._targets: dict[str, PythonTarget] = {}

    def register(self, name: str, fn: PythonTarget) -> None:
        if not name:
            raise ConfigError("a python target needs a name", field="target")
        if not callable(fn):
            raise ConfigError(f"{name!r} is not callable", field="target")
        self._targets[name] = fn

    def registered(self, name: str) -> bool:
        return name in self._targets

    def validate(self, spec: JobSpec) -> None:
        if not (spec.target or spec.name):
            raise ConfigError("a python job needs a target", field="target")
        # no options of its own (announce delivery's only): job data goes in ``payload``
        check_option_keys(spec, ())

    async def execute(self, ctx: RunContext) -> ExecResult:
        name = ctx.job.target or ctx.job.name
        fn = self._targets.get(name)
        if fn is None:
            return ExecResult(
                ok=False,
                error=f"no python target registered as {name!r} in this process",
            )
        return ExecResult(ok=True, result=await fn(ctx))

    def __repr__(self) -> str:
        return f"<PythonExecutor {len(self._targets)} targets>"
