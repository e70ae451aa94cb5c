"""The executor contract: what a run actor hands an executor and what it gets back.

An executor is a named plugin that performs one run. It is a plain object, not an
actor: the run actor owns the cancel scope, the deadline and the outcome, and calls
``await executor.execute(ctx)`` inside them. Executors report liveness with
``ctx.heartbeat()`` and extra facts about the run with ``ctx.report(...)``; what they
may ask of the runtime beyond their run goes through ``ctx.host`` (a ``Host``,
``actors/executors/host.py``).

Outcome rules the run actor applies to what an executor does:
- returns ``ExecResult(ok=True)``      → ``ok``
- returns ``ExecResult(ok=False)``     → ``error`` (retried unless ``retry=False``)
- raises ``RetryAfter(s)``            → ``error``, next attempt not before ``s`` seconds
- raises ``Discard(reason)``          → ``error``, dead-lettered at once
- raises anything else                → ``crashed`` (retried)
- passes the absolute / idle deadline → ``timeout`` (retried)
- is cancelled by an operator          → ``cancelled`` (not retried)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from shepherd.actors.executors.host import Host
from shepherd.store.models import JobSpec

__all__ = ["ExecResult", "Executor", "RunContext"]


class ExecResult(msgspec.Struct, kw_only=True):
    ok: bool = True
    result: Any = None
    error: str | None = None
    retry: bool = True  # False: a failure that must not be retried (dead-letter now)
    retry_after: float | None = None  # seconds; overrides the backoff for the next attempt
    deliver: bool = True  # False: suppress announce delivery for this run (sentinels)
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class RunContext:
    """What one run attempt knows. Built by the run actor; executors only read it.

    ``heartbeat``, ``report`` and ``claimed`` are callbacks into the run actor (same
    task tree), never into another actor's state. ``host`` is what the run may ask of the runtime;
    None where the run has no runtime around it (an executor tested alone).
    """

    __slots__ = (
        "_on_claim",
        "_on_heartbeat",
        "agent",
        "agent_model",
        "attempt",
        "data_dir",
        "dispatch_id",
        "host",
        "idempotency_key",
        "job",
        "job_id",
        "max_attempts",
        "parent_run_id",
        "payload",
        "reported",
        "run_id",
        "wall",
    )

    def __init__(
        self,
        *,
        run_id: int,
        dispatch_id: int,
        job_id: int,
        job: JobSpec,
        attempt: int,
        max_attempts: int,
        payload: dict[str, Any],
        idempotency_key: str | None,
        parent_run_id: int | None = None,
        agent: str | None = None,
        agent_model: str | None = None,
        data_dir: str = ".",
        wall: Callable[[], float],
        on_heartbeat: Callable[[str | None], None] | None = None,
        on_claim: Callable[[str, float], None] | None = None,
        host: Host | None = None,
    ) -> None:
        self.run_id = run_id
        self.dispatch_id = dispatch_id
        self.job_id = job_id
        self.job = job
        self.attempt = attempt
        self.max_attempts = max_attempts
        # a dict; for a python target that declares its payload type, that Struct
        self.payload: Any = payload
        self.idempotency_key = idempotency_key
        self.parent_run_id = parent_run_id
        # the agent assignment chose for this run (by capability), and its model
        self.agent = agent
        self.agent_model = agent_model
        self.data_dir = data_dir
        self.wall = wall
        self._on_heartbeat = on_heartbeat
        self._on_claim = on_claim
        self.host = host
        self.reported: dict[str, Any] = {}

    def heartbeat(self, note: str | None = None) -> None:
        """Tell the runtime the run is alive and making progress (resets the idle timer)."""
        if self._on_heartbeat is not None:
            self._on_heartbeat(note)

    def claimed(self, agent: str, at: float) -> None:
        """Tell the runtime that ``agent`` took the run at ``at`` (wall): a worker
        claimed its lease (``external``). The run is that agent's from now on."""
        if self._on_claim is not None:
            self._on_claim(agent, at)

    def report(self, **details: Any) -> None:
        """Record facts about the run (exit code, bytes, prompt sections…) on its row."""
        self.reported.update(details)

    def __repr__(self) -> str:
        return (
            f"<RunContext run={self.run_id} dispatch={self.dispatch_id} "
            f"job={self.job.name!r} attempt={self.attempt}/{self.max_attempts}>"
        )


class Executor(Protocol):
    """A named way of performing a run."""

    name: str

    def validate(self, spec: JobSpec) -> None:
        """Raise ``ConfigError`` naming the field if ``spec`` cannot run on this executor."""
        ...

    async def execute(self, ctx: RunContext) -> ExecResult: ...
