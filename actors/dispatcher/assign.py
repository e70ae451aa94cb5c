"""Capability-based assignment: Dispatch's score (SEMANTICS D14), as pure functions.

    score = capability match x availability x policy x priority weight

=====================  ===============================================================
factor                 value
=====================  ===============================================================
capability match       1 when the agent has every required capability (names are
                       lower-cased; an agent with ``*`` has them all; nothing
                       required → 1), else 0
availability           ready 1.0 · sleeping 0.8 · busy 0.5 while its running runs are
                       under ``max_concurrent``, else 0 · degraded, draining,
                       offline 0. An agent at its limit is 0 whatever its status;
                       a ready (or sleeping) agent with a run in flight counts as busy
policy                 always-on 1.0 · on-demand: ready or busy 0.9, sleeping 0.6
priority weight        1 + 0.05 x p, with Dispatch's 0-10 priority p; shepherd's levels
                       map critical 10, high 8, normal 5, low 3, background 0
=====================  ===============================================================

The highest score wins; ties go to the agent with the fewest running runs, then to the
smallest name. A score of 0 is not eligible; a dispatch with no eligible agent waits
(``unmatched``). Example: an always-on ready agent for a critical dispatch scores
1 x 1.0 x 1.0 x 1.5 = 1.5; an on-demand sleeping one 1 x 0.8 x 0.6 x 1.5 = 0.72.

For one dispatch, capability match and priority weight are the same for every
candidate, so candidates rank by ``factor`` (availability x policy) alone: that is what
the agent table's per-requirement heaps order by (``agents.AgentTable``). ``best`` is
the plain scan, the reference the table is tested against.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol, TypeVar

__all__ = [
    "LEVEL_PRIORITY",
    "availability",
    "best",
    "capability_match",
    "effective_status",
    "factor",
    "policy_factor",
    "priority_weight",
    "rank_key",
    "score",
    "unmatched_reason",
]

# shepherd's priority rank (0 critical … 4 background) → Dispatch's 0-10 priority
LEVEL_PRIORITY: tuple[int, ...] = (10, 8, 5, 3, 0)

_AVAILABILITY = {"ready": 1.0, "sleeping": 0.8, "busy": 0.5}
_ON_DEMAND = {"ready": 0.9, "busy": 0.9, "sleeping": 0.6}


def capability_match(required: Collection[str], capabilities: Collection[str]) -> float:
    if not required or "*" in capabilities:
        return 1.0
    return 1.0 if all(c in capabilities for c in required) else 0.0


def effective_status(status: str, running: int) -> str:
    """A ready or sleeping agent with a run in flight is busy."""
    return "busy" if running > 0 and status in ("ready", "sleeping") else status


def availability(status: str, running: int, max_concurrent: int) -> float:
    if running >= max_concurrent:
        return 0.0
    return _AVAILABILITY.get(effective_status(status, running), 0.0)


def policy_factor(policy: str, status: str, running: int = 0) -> float:
    if policy == "always-on":
        return 1.0
    return _ON_DEMAND.get(effective_status(status, running), 0.0)


def priority_weight(priority: int) -> float:
    """Dispatch's 0-10 priority → 1.0 … 1.5."""
    return 1.0 + 0.05 * priority


def factor(status: str, policy: str, running: int, max_concurrent: int) -> float:
    """What ranks an agent among the candidates of one dispatch."""
    return availability(status, running, max_concurrent) * policy_factor(policy, status, running)


def score(
    required: Collection[str],
    capabilities: Collection[str],
    *,
    status: str,
    policy: str,
    running: int,
    max_concurrent: int,
    priority: int,
) -> float:
    """Dispatch's score (``priority``: Dispatch's 0-10; ``LEVEL_PRIORITY[rank]``)."""
    return (
        capability_match(required, capabilities)
        * factor(status, policy, running, max_concurrent)
        * priority_weight(priority)
    )


class Candidate(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def capabilities(self) -> Collection[str]: ...
    @property
    def status(self) -> str: ...
    @property
    def policy(self) -> str: ...
    @property
    def running(self) -> int: ...
    @property
    def max_concurrent(self) -> int: ...


C = TypeVar("C", bound=Candidate)


def rank_key(f: float, running: int, name: str) -> tuple[float, int, str]:
    """Smallest first: the highest factor, then the fewest running, then the name."""
    return (-f, running, name)


def best(agents: Iterable[C], required: Collection[str], priority: int) -> C | None:
    """The winner by score among ``agents`` (a plain scan), or None: nobody eligible."""
    won: C | None = None
    won_key: tuple[float, int, str] | None = None
    for a in agents:
        s = score(
            required,
            a.capabilities,
            status=a.status,
            policy=a.policy,
            running=a.running,
            max_concurrent=a.max_concurrent,
            priority=priority,
        )
        if s <= 0:
            continue
        key = rank_key(s, a.running, a.name)
        if won_key is None or key < won_key:
            won, won_key = a, key
    return won


def unmatched_reason(required: Iterable[str], owner: str | None = None) -> str:
    """``unmatched: needs [gpu, python]`` (``… for owner alice`` with the owner filter)."""
    text = f"unmatched: needs [{', '.join(sorted(required))}]"
    return f"{text} for owner {owner}" if owner else text
