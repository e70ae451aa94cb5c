"""The breaker table: one circuit breaker per executor, fed by outcomes and probes.

The transitions are the pure functions of ``actors.breaker`` (its docstring draws the
state diagram); this table holds the current ``Breaker`` of each executor that has one.
An executor gets a breaker on its first gateway failure or health probe; until then
``gate`` lets everything through at the cost of one dict lookup.

Fed by:

- ``on_outcome``: a gateway failure (the executor raised ``Deferred``, or reported
  ``details["gateway_failure"]``) counts toward opening; an ``ok`` closes; any other
  outcome of a half-open trial ends the trial without counting (a job's own error says
  nothing about its gateway);
- ``on_probe``: the health monitor's probe of the executor's gateway.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shepherd.actors import breaker
from shepherd.actors.messages import RunFinished

__all__ = ["BreakerTable", "is_gateway_failure"]


def is_gateway_failure(msg: RunFinished) -> bool:
    return msg.reason == "deferred" or bool((msg.details or {}).get("gateway_failure"))


class BreakerTable:
    __slots__ = ("_fail_max", "_reset", "_table")

    def __init__(self, *, fail_max: int, reset: float) -> None:
        self._fail_max = fail_max
        self._reset = reset
        self._table: dict[str, breaker.Breaker] = {}

    def __len__(self) -> int:
        return len(self._table)

    def get(self, executor: str) -> breaker.Breaker | None:
        return self._table.get(executor)

    def _new(self) -> breaker.Breaker:
        return breaker.Breaker(fail_max=self._fail_max, reset=self._reset)

    def gate(self, executor: str, now: float) -> float | None:
        """May one dispatch of ``executor`` start now? None if so (a half-open trial is
        marked); else when to look at it again."""
        b = self._table.get(executor)
        if b is None:
            return None
        b, ok = breaker.allow(b, now)
        self._table[executor] = b
        if ok:
            return None
        return breaker.deferred_until(b, now) or now + 1.0

    def on_outcome(self, executor: str, msg: RunFinished, now: float) -> None:
        b = self._table.get(executor)
        if is_gateway_failure(msg):
            self._table[executor] = breaker.on_failure(b or self._new(), now)
        elif b is not None and msg.outcome == "ok":
            self._table[executor] = breaker.on_success(b, now)
        elif b is not None and b.trial:  # a trial that failed for its own reasons
            self._table[executor] = msgspec.structs.replace(b, trial=False)

    def on_probe(self, executor: str, healthy: bool, now: float) -> None:
        b = self._table.get(executor) or self._new()
        self._table[executor] = breaker.on_probe(b, healthy, now)

    def statistics(self) -> dict[str, dict[str, Any]]:
        return {name: {"state": b.state, "failures": b.failures} for name, b in self._table.items()}

    def __repr__(self) -> str:
        return f"<BreakerTable {len(self._table)} executors>"
