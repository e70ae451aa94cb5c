"""Finalization: what happens to a dispatch after one of its runs ends. Pure functions.

Retry policy lives here, next to the decision it feeds:

- ``ok``                                    → ``done``
- ``cancelled`` by an operator or replaced   → ``cancelled``
- ``cancelled`` by shutdown                  → at-least-once: ``requeue`` (replayed on
  the next start, attempt kept); at-most-once: ``cancelled``
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
"""

from __future__ import annotations

import random
from typing import Literal

import msgspec

from shepherd.actors.messages import Entry, RunFinished
from shepherd.store.models import JobSpec, RetryPolicy

__all__ = ["Decision", "backoff", "decide"]

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
        if msg.reason == "shutdown" and replay:
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
