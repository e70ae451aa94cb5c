"""The dispatcher's settings, the names of its counters (its statistics), the size of
its window of the queue."""

from __future__ import annotations

import msgspec

from shepherd.actors.dispatcher.rates import RateLimit
from shepherd.store.ops import DeadLetterAlert

__all__ = ["COUNTERS", "DispatcherConfig", "window_size"]

COUNTERS = [
    "admitted",
    "ok",
    "error",
    "timeout",
    "crashed",
    "cancelled",
    "retried",
    "chained",
    "dead",
    "skipped",
    "lost",
    "lanes",
    "fenced",
    "store_errors",
    "loops",
    "deferred",
    "stale",
    "reloads",
]


class DispatcherConfig(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    concurrency: int = 64
    # a cluster-wide cap on running runs ([cluster] concurrency), this node's share of
    # it (actors.cluster.Membership.share) caps it besides ``concurrency``; 0 = none
    cluster_concurrency: int = 0
    pool_limits: dict[str, int] = msgspec.field(default_factory=dict)
    data_dir: str = "."
    max_batch: int = 2000
    breaker_fail_max: int = 5
    breaker_reset: float = 30.0
    dead_letter: DeadLetterAlert | None = None  # alert deliveries of dead letters
    stale_margin: float = 5.0  # past a deadline by this much, the stale check steps in
    # token buckets of the config's [rates] by key: "executor:shell", "pool:db", "agent:main"
    rates: dict[str, RateLimit] = msgspec.field(default_factory=dict)
    # assignment (agents.AgentTable): owner → agent ids; failed runs in a row → degraded
    agent_owners: dict[str, list[str]] = msgspec.field(default_factory=dict)
    degraded_after: int = 5
    # queued dispatches held in memory, the head of the queue (ready.py); 0: window_size
    window: int = 0


def window_size(concurrency: int) -> int:
    """The window for ``concurrency`` run slots: four times it, at least 256, at most
    8,192 unless twice the concurrency is more (a refill every half window)."""
    return max(256, min(4 * concurrency, 8192), 2 * concurrency)
