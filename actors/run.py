"""The run actor: one attempt at one dispatch, a temporary child of the run supervisor.

Role: execute the executor inside a cancel scope bounded by the absolute deadline
(``timeout``) and the idle deadline (``idle_timeout`` after the last heartbeat), turn
whatever happened into exactly one outcome, and report it to the dispatcher.
Inbox: none (it is cancelled through its ``ChildHandle``). Sends: ``RunFinished`` to the
dispatcher, shielded and bounded; heartbeats and claims (``ctx.claimed``: a worker took
the run) go to the launcher's callbacks. Restart type: temporary — never restarted; retries
are data the dispatcher decides on. Timers: the two deadlines.

A result is checked before it is reported (``store.bounds.storable``): one that is not
a JSON value, or is nested deeper than ``MAX_DEPTH``, makes the run an ``error`` with
that message instead of being stored, so every stored result can be read back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import msgspec

from shepherd.actors.executors.base import ExecResult, Executor, RunContext
from shepherd.actors.executors.host import Host
from shepherd.actors.messages import DispatcherMsg, RunFinished
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.primitives.runsup import ChildHandle
from shepherd.store.bounds import storable
from shepherd.store.errors import ConfigError, Deferred, Discard, MailboxFull, RetryAfter
from shepherd.store.models import JobSpec

__all__ = ["RunOrder", "run_actor"]

log = logging.getLogger("shepherd.run")


class RunOrder(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    dispatch_id: int
    job_id: int
    job: JobSpec
    attempt: int
    max_attempts: int
    payload: dict[str, Any]
    idempotency_key: str | None
    parent_run_id: int | None = None
    agent: str | None = None  # the agent assignment chose (actors/dispatcher/agents.py)
    agent_model: str | None = None


async def run_actor(
    handle: ChildHandle,
    order: RunOrder,
    *,
    executor: Executor,
    clock: Clock,
    report: Address[DispatcherMsg],
    data_dir: str,
    host: Host | None,
    on_heartbeat: Callable[[int, float], None] | None = None,
    on_claim: Callable[[int, str, float], None] | None = None,
) -> None:
    job = order.job
    started = clock.now()
    deadline = started + float(job.timeout)
    # an executor may bring its own idle deadline for jobs that set none (``external``:
    # the lease renewal deadline, ``default_idle_timeout``)
    own_idle: float | None = getattr(executor, "default_idle_timeout", None)
    idle = float(job.idle_timeout) if job.idle_timeout else own_idle
    last_beat = started
    why_deadline = "timeout"

    def current_deadline() -> float:
        nonlocal why_deadline
        if idle is not None and last_beat + idle < deadline:
            why_deadline = "idle"
            return last_beat + idle
        why_deadline = "timeout"
        return deadline

    scope = handle.new_scope()
    handle.scope = scope

    def heartbeat(_note: str | None) -> None:
        nonlocal last_beat
        last_beat = clock.now()
        if idle is not None:
            clock.cancel_at(scope, current_deadline())
        if on_heartbeat is not None:
            on_heartbeat(order.run_id, clock.wall())

    def claimed(agent: str, at: float) -> None:
        if on_claim is not None:
            on_claim(order.run_id, agent, at)

    ctx = RunContext(
        run_id=order.run_id,
        dispatch_id=order.dispatch_id,
        job_id=order.job_id,
        job=job,
        attempt=order.attempt,
        max_attempts=order.max_attempts,
        payload=order.payload,
        idempotency_key=order.idempotency_key,
        parent_run_id=order.parent_run_id,
        agent=order.agent,
        agent_model=order.agent_model,
        data_dir=data_dir,
        wall=clock.wall,
        on_heartbeat=heartbeat,
        on_claim=claimed,
        host=host,
    )
    result: ExecResult | None = None
    error: BaseException | None = None
    if handle.cancel_reason is not None:  # cancelled before it got going
        scope.cancel()
    clock.cancel_at(scope, current_deadline())
    with scope:
        # One of the two places that catch broadly: an exception becomes an outcome.
        try:
            result = await executor.execute(ctx)
        except Exception as exc:
            error = exc
    msg = _outcome(order, ctx, result, error, scope, handle, why_deadline, job, idle)
    try:
        report.tell(msg)
    except MailboxFull:  # back-pressure: wait for room, shielded and bounded
        with anyio.CancelScope(shield=True) as guard:
            clock.cancel_at(guard, clock.now() + 30.0)
            await report.send(msg)


def _outcome(
    order: RunOrder,
    ctx: RunContext,
    result: ExecResult | None,
    error: BaseException | None,
    scope: anyio.CancelScope,
    handle: ChildHandle,
    why_deadline: str,
    job: JobSpec,
    idle: float | None = None,
) -> RunFinished:
    rep = ctx.reported
    if result is not None and result.result is not None:
        result = _storable(result)
    if result is not None and result.ok and not (rep or result.details or scope.cancelled_caught):
        # the common case, nothing reported along the way: the same report, built directly
        return RunFinished(
            run_id=order.run_id,
            dispatch_id=order.dispatch_id,
            outcome="ok",
            result=result.result,
            deliver=result.deliver,
        )
    base: dict[str, Any] = {
        "run_id": order.run_id,
        "dispatch_id": order.dispatch_id,
        "exit_code": rep.get("exit_code"),
        "signal": rep.get("signal"),
        "stdout": rep.get("stdout"),
        "stderr": rep.get("stderr"),
        "details": rep.get("details") or None,
    }
    if scope.cancelled_caught or (result is None and error is None):
        if handle.cancel_reason in ("idle", "stale"):  # the health check's backstop
            # it steps in once a deadline has passed: the one this run was waiting for
            # (``why_deadline``); a job without ``idle_timeout`` has no idle deadline
            if handle.cancel_reason == "idle" and idle:
                why_deadline = "idle"
        elif handle.cancel_reason is not None:
            return RunFinished(
                outcome="cancelled",
                reason=handle.cancel_reason,
                error=f"cancelled ({handle.cancel_reason})",
                **base,
            )
        if why_deadline == "idle":
            text = f"no activity for {float(idle or 0):g}s (idle timeout)"
        else:
            text = f"exceeded {float(job.timeout):g}s timeout"
        return RunFinished(
            outcome="timeout", error=text, timed_out=True, reason=why_deadline, **base
        )
    if error is not None:
        if isinstance(error, RetryAfter):
            return RunFinished(outcome="error", error=str(error), retry_after=error.seconds, **base)
        if isinstance(error, Deferred):
            return RunFinished(
                outcome="error",
                error=str(error),
                retry_after=error.seconds,
                reason="deferred",
                **base,
            )
        if isinstance(error, Discard):
            return RunFinished(outcome="error", error=error.reason, retry=False, **base)
        log.warning(
            "run %s of %s crashed: %s: %s", order.run_id, job.name, type(error).__name__, error
        )
        return RunFinished(outcome="crashed", error=f"{type(error).__name__}: {error}", **base)
    assert result is not None
    details = {**(base.pop("details") or {}), **result.details} or None
    if result.ok:
        return RunFinished(
            outcome="ok", result=result.result, deliver=result.deliver, details=details, **base
        )
    return RunFinished(
        outcome="error",
        error=result.error or "failed",
        result=result.result,
        retry=result.retry,
        retry_after=result.retry_after,
        deliver=result.deliver,
        details=details,
        **base,
    )


def _storable(result: ExecResult) -> ExecResult:
    """``result`` with its value as the builtins it is stored as; a value that cannot be
    stored (not JSON, nested too deeply) makes the run an error that says why."""
    try:
        value = storable(result.result, field="result")
    except ConfigError as exc:
        problem = f"the run's result cannot be stored: {exc}"
        error = problem if result.ok else f"{result.error or 'failed'}; {problem}"
        return msgspec.structs.replace(result, ok=False, result=None, error=error)
    return msgspec.structs.replace(result, result=value)
