"""Circuit breaker per executor: pure state transitions, no I/O, no clock.

closed ──(fail_max consecutive gateway failures)──▶ open
open ──(reset seconds passed, or a health probe says healthy)──▶ half_open
half_open ──(the one trial run succeeds)──▶ closed
half_open ──(the trial fails)──▶ open (the reset period starts again)
any ──(a health probe says unhealthy)──▶ open

Only gateway failures count (the executor raised ``Deferred``, or reported
``details["gateway_failure"]``); a job's own error says nothing about its gateway.
While the breaker is not closed, the dispatcher defers that executor's dispatches
without spending an attempt (``deferred_until``); in half_open exactly one trial is let
through.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Breaker", "allow", "deferred_until", "on_failure", "on_probe", "on_success"]

State = Literal["closed", "open", "half_open"]


class Breaker(msgspec.Struct, frozen=True, kw_only=True):
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    trial: bool = False  # a half-open trial run is in flight
    fail_max: int = 5
    reset: float = 30.0


def on_failure(b: Breaker, now: float) -> Breaker:
    failures = b.failures + 1
    if b.state == "half_open" or failures >= b.fail_max:
        return msgspec.structs.replace(
            b, state="open", failures=failures, opened_at=now, trial=False
        )
    return msgspec.structs.replace(b, failures=failures)


def on_success(b: Breaker, now: float) -> Breaker:
    if b.state == "closed" and b.failures == 0:
        return b
    return msgspec.structs.replace(b, state="closed", failures=0, trial=False)


def on_probe(b: Breaker, healthy: bool, now: float) -> Breaker:
    if not healthy:
        if b.state == "open":
            return b
        return msgspec.structs.replace(b, state="open", opened_at=now, trial=False)
    if b.state == "open":
        return msgspec.structs.replace(b, state="half_open", trial=False)
    return b


def allow(b: Breaker, now: float) -> tuple[Breaker, bool]:
    """May one dispatch of this executor start now? (Marks the half-open trial.)"""
    if b.state == "closed":
        return b, True
    if b.state == "open":
        if now - b.opened_at < b.reset:
            return b, False
        b = msgspec.structs.replace(b, state="half_open", trial=False)
    if b.trial:
        return b, False
    return msgspec.structs.replace(b, trial=True), True


def deferred_until(b: Breaker, now: float) -> float | None:
    """When to look again at a deferred dispatch of this executor."""
    if b.state == "closed":
        return None
    if b.state == "open":
        return max(now, b.opened_at + b.reset)
    return now + 1.0 if b.trial else None
