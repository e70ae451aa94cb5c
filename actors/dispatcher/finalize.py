"""Finalization: what happens to a dispatch after one of its runs ends, and the events
that say so. Pure functions, no I/O, no clock.

Retry policy lives here, next to the decision it feeds (``decide``):

- ``ok``                                    → ``done``
- ``cancelled`` by an operator or replaced   → ``cancelled``
- ``cancelled`` by shutdown                  → at-least-once: ``requeue`` (replayed on
  the next start, attempt kept); at-most-once: ``cancelled``
- ``cancelled`` because its agent went offline (``agent-offline``) → the same: an
  at-least-once dispatch is queued again (and assigned to another agent); and the same
  when its node's lease ran out (``fenced``, ``actors.cluster``), if no rescue did it
- ``error`` with reason ``deferred`` (the executor raised ``Deferred``: its gateway is
  down)                                      → ``requeue`` after the given seconds and
  the attempt is refunded (OCS: "Gateway unavailable -- deferred", nothing else)
- ``error`` / ``timeout`` / ``crashed``:
  - the executor said not to retry (``Discard``)          → ``dead`` (``discarded``)
  - attempts used up (attempt >= max_attempts)            → ``dead`` (``attempts``)
  - the next attempt would start at or after expires_at    → ``dead`` (``expired``)
  - otherwise                                             → ``retry`` at
    ``now + retry_after`` if the executor asked (``RetryAfter``), else
    ``now + backoff(attempt)``.

``backoff(n) = min(max_delay, base · factor^(n-1))``, then spread by ``jitter`` (a
fraction: 0.1 means ±10 %), with ``n`` the number of the attempt that just failed.

The dispatcher commits each pass as one group: ``FinishRun`` ops for the outcomes
(``finish_op``), ``ClaimRun`` ops for what admission let through (``claim_op``) and the
settlements of what ended without running. Once committed, ``finished`` says what the
outcome left behind (a retry to queue again, the ``OutcomeEvent``); ``settled`` and
``key_taken`` give the events of a dispatch that ended without a run; ``held_cancelled``
the end of one an operator cancelled while it awaited its approval; ``queued_event``
the news of dispatches taken in. The module is long because every end of a dispatch,
the rule that decides it and the event that tells it are read together, here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

from shepherd.actors.messages import (
    DispatchQueued,
    Entry,
    Event,
    OutcomeEvent,
    OutcomeStatus,
    Queued,
    RunFinished,
    SlotRecord,
    entry_from_dispatch,
)
from shepherd.store import keys
from shepherd.store.keys import lineage_key
from shepherd.store.models import (
    PRIORITIES,
    Dispatch,
    JobSpec,
    Outcome,
    RetryPolicy,
    is_skip_reason,
)
from shepherd.store.ops import ClaimRun, FinishRun, Settle

__all__ = [
    "Decision",
    "backoff",
    "claim_op",
    "decide",
    "finish_op",
    "finished",
    "held_cancelled",
    "key_taken",
    "outcome_event",
    "queued_event",
    "settled",
]

Next = Literal["done", "retry", "dead", "cancelled", "requeue"]


class Decision(msgspec.Struct, frozen=True):
    next: Next
    not_before: float | None = None
    dead_reason: str | None = None
    refund: bool = False  # the attempt does not count


def backoff(attempt: int, policy: RetryPolicy, rand: float = 0.5) -> float:
    """Delay before the attempt after ``attempt`` (1-based). ``rand`` in [0, 1)."""
    delay = min(float(policy.max_delay), float(policy.base) * policy.factor ** max(0, attempt - 1))
    if policy.jitter:
        delay *= 1.0 + policy.jitter * (2.0 * rand - 1.0)
    return max(0.0, delay)


def decide(
    entry: Entry,
    job: JobSpec | None,
    msg: RunFinished,
    now: float,
    *,
    attempt: int,
    rng: random.Random | None = None,
) -> Decision:
    if msg.outcome == "ok":
        return Decision("done")
    if msg.outcome == "cancelled":
        replay = job is not None and job.delivery_guarantee == "at-least-once"
        if msg.reason in ("shutdown", "agent-offline", "fenced") and replay:
            return Decision("requeue", not_before=now)
        return Decision("cancelled")
    if msg.reason == "deferred":
        return Decision("requeue", not_before=now + (msg.retry_after or 60.0), refund=True)
    if not msg.retry:
        return Decision("dead", dead_reason="discarded")
    if attempt >= entry.max_attempts:
        return Decision("dead", dead_reason="attempts")
    if msg.retry_after is not None:
        delay = msg.retry_after
    else:
        policy = job.retry if job is not None else RetryPolicy()
        delay = backoff(attempt, policy, (rng or random).random())
    at = now + delay
    if entry.expires_at is not None and at >= entry.expires_at:
        return Decision("dead", dead_reason="expired")
    return Decision("retry", not_before=at)


def finish_op(
    msg: RunFinished,
    entry: Entry,
    job: JobSpec | None,
    now: float,
    *,
    attempt: int,
    rng: random.Random | None = None,
) -> FinishRun:
    """The write that ends run ``msg.run_id`` of ``entry`` as ``decide`` says."""
    d = decide(entry, job, msg, now, attempt=attempt, rng=rng)
    # Field by field on purpose: a generic copy would hide each field from the type
    # checker, and this is the one place a run's report becomes the stored outcome.
    return FinishRun(
        run_id=msg.run_id,
        dispatch_id=msg.dispatch_id,
        outcome=msg.outcome,
        next=d.next,
        error=msg.error,
        result=_encode(msg.result),
        reason=msg.reason,
        not_before=d.not_before,
        dead_reason=d.dead_reason,
        refund=d.refund,
        exit_code=msg.exit_code,
        signal=msg.signal,
        timed_out=msg.timed_out,
        stdout=msg.stdout,
        stderr=msg.stderr,
        details=_encode(msg.details),
    )


def claim_op(e: Entry, job: JobSpec | None) -> ClaimRun:
    """The write that claims the next attempt of ``e`` (and its idempotency key)."""
    short = job is not None and job.delete_after_run
    return ClaimRun(
        dispatch_id=e.id,
        attempt=e.attempt + 1,
        job_id=e.job_id,
        idempotency_key=e.idempotency_key or lineage_key(e.id),
        key_ttl=keys.SHORT_TTL if short else keys.DEFAULT_TTL,
    )


def finished(
    msg: RunFinished,
    entry: Entry,
    attempt: int,
    f: FinishRun,
    seq: int,
    job: str,
    now: float,
    *,
    announce: bool = True,
) -> tuple[Entry | None, OutcomeEvent]:
    """After ``f`` was committed (``seq``: the requeued dispatch's new seq): the entry to
    queue again (a retry or requeue, else None) and the event to emit (``announce``:
    whether the run's job announces this outcome)."""
    again = f.next in ("retry", "requeue")
    status: OutcomeStatus = "queued" if f.next == "retry" or f.next == "requeue" else f.next
    retry = None
    if again:
        retry = msgspec.structs.replace(
            entry,
            seq=seq,
            attempt=attempt - 1 if f.refund else attempt,
            not_before=f.not_before or now,
            agent=None,  # the next attempt is assigned (or claimed by a worker) afresh
            agent_model=None,
        )
    event = outcome_event(
        entry,
        job,
        msg.run_id,
        attempt,
        msg.outcome,
        status,
        now,
        error=msg.error,
        result=msg.result,
        dead_reason=f.dead_reason,
        next_attempt_at=f.not_before if again else None,
        deliver=msg.deliver,
        announce=announce,
    )
    return retry, event


def settled(e: Entry, s: Settle, job: str, now: float) -> list[Event]:
    """The events of a dispatch that ended without running (``admission.settle``)."""
    dead_reason = s.reason if s.status == "dead" else None
    out = outcome_event(
        e, job, None, e.attempt, s.outcome, s.status, now, error=s.reason, dead_reason=dead_reason
    )
    if s.outcome != "skipped" or not is_skip_reason(s.reason):
        return [out]
    return [SlotRecord(job=job, reason=s.reason, dispatch_id=e.id, slot=e.slot, at=now), out]


def key_taken(e: Entry, job: str, now: float) -> list[Event]:
    """The events of a claim refused because another run holds its idempotency key."""
    error = "idempotency key already claimed"
    return [
        SlotRecord(job=job, reason="idempotency-skip", dispatch_id=e.id, slot=e.slot, at=now),
        outcome_event(e, job, None, e.attempt, "skipped", "done", now, error=error),
    ]


def held_cancelled(d: Dispatch, now: float) -> OutcomeEvent:
    """The final event of a dispatch cancelled while it awaited its approval (it was
    never queued here): heard as any other end (waiters, the scheduler's one-shots)."""
    e, error = entry_from_dispatch(d), "cancelled by operator"
    return outcome_event(e, d.job_name, None, e.attempt, "cancelled", "cancelled", now, error=error)


def queued_event(
    entries: Iterable[Entry],
    names: Callable[[int], str],
    at: float,
    state: Literal["queued", "awaiting_approval"] = "queued",
) -> DispatchQueued:
    """One ``DispatchQueued`` for dispatches just taken in (``names``: job id -> name)."""
    return DispatchQueued(
        dispatches=[
            Queued(
                dispatch_id=e.id,
                job=names(e.job_id),
                priority=PRIORITIES[e.priority] if 0 <= e.priority < len(PRIORITIES) else "normal",
                state=state,
                source=e.kind,
                not_before=e.not_before,
                slot=e.slot,
            )
            for e in entries
        ],
        at=at,
    )


def outcome_event(
    e: Entry,
    job: str,
    run_id: int | None,
    attempt: int,
    outcome: Outcome,
    status: OutcomeStatus,
    at: float,
    **kw: Any,
) -> OutcomeEvent:
    return OutcomeEvent(
        dispatch_id=e.id,
        job=job,
        run_id=run_id,
        attempt=attempt,
        outcome=outcome,
        status=status,
        final=status != "queued",
        at=at,
        job_id=e.job_id,
        kind=e.kind,
        slot=e.slot,
        agent=e.agent or "",
        **kw,
    )


def _encode(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        return msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError):
        return msgspec.json.encode(repr(value))
