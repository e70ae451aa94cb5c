"""Engine-neutral pieces of the agents registry: the column lists, the row → ``Agent``
decoder and the rules of its writes (which columns a definition holds, how an update's
values are stored, what one ``AgentState`` changes).

Capabilities are stored comma-joined (names cannot hold a comma). The definition's
columns are what ``register`` replaces; the rest (status, last seen, failures) is live
state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shepherd.store.models import Agent, AgentSpec
from shepherd.store.ops.agents import AgentState

__all__ = [
    "AGENT_COLUMNS",
    "DEFINITION",
    "RUNNING",
    "UPDATABLE",
    "agent",
    "definition",
    "state_changes",
    "stored_changes",
]

AGENT_COLUMNS = (
    "id, name, capabilities, status, policy, max_concurrent, last_seen, delivery, model,"
    " wake, wake_timeout, source, failures, rev, created_at, updated_at, removed"
)
# its runs in flight (``runs_agent`` serves it)
RUNNING = ", (SELECT COUNT(*) FROM runs WHERE runs.agent = agents.id AND runs.status = 'running')"
DEFINITION = (
    "name",
    "capabilities",
    "policy",
    "max_concurrent",
    "delivery",
    "model",
    "wake",
    "wake_timeout",
)
UPDATABLE = frozenset(DEFINITION)


def definition(s: AgentSpec) -> tuple[Any, ...]:
    """The stored values of ``DEFINITION`` for ``s``."""
    return (
        s.name or s.id,
        ",".join(s.capabilities),
        s.policy,
        s.max_concurrent,
        s.delivery,
        s.model,
        s.wake,
        float(s.wake_timeout),
    )


def stored_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """An ``UpdateAgent``'s changes as stored: definition columns only, capabilities
    comma-joined, the wake timeout a float."""
    out = {k: v for k, v in changes.items() if k in UPDATABLE}
    if "capabilities" in out:
        out["capabilities"] = ",".join(out["capabilities"])
    if "wake_timeout" in out:
        out["wake_timeout"] = float(out["wake_timeout"])
    return out


def state_changes(status: str, s: AgentState) -> tuple[list[tuple[str, Any]], str]:
    """What ``s`` changes on an agent whose stored status is ``status``: the (column,
    value) pairs to write (none: the row stays as it is) and the status it has after.
    A status change applies only while the stored status is one of ``s.when``; coming
    back from offline / degraded starts a fresh failure count."""
    sets: list[tuple[str, Any]] = []
    if s.status is not None and (s.when is None or status in s.when) and s.status != status:
        sets.append(("status", s.status))
        if status in ("offline", "degraded") and s.failures is None:
            sets.append(("failures", 0))
        status = s.status
    if s.seen is not None:
        sets.append(("last_seen", float(s.seen)))
    if s.failures is not None:
        sets.append(("failures", s.failures))
    return sets, status


def agent(r: Sequence[Any]) -> Agent:
    """A row of ``AGENT_COLUMNS`` (and, when selected, ``RUNNING``) as an ``Agent``."""
    return Agent(
        id=r[0],
        name=r[1],
        capabilities=r[2].split(",") if r[2] else [],
        status=r[3],
        policy=r[4],
        max_concurrent=r[5],
        last_seen=r[6],
        delivery=r[7],
        model=r[8],
        wake=r[9],
        wake_timeout=r[10],
        source=r[11],
        failures=r[12],
        rev=r[13],
        created_at=r[14],
        updated_at=r[15],
        removed=bool(r[16]),
        running=r[17] if len(r) > 17 else 0,
    )
