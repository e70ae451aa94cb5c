"""Write ops on the agents registry (README "Agents"), engine-neutral.

- ``SaveAgent``: add an agent (``add``: refused when the id is taken) or register one
  from the config / the gateway at start (``register``: inserted, or its definition
  replaced while its live state — status, last seen, failures — is kept);
- ``UpdateAgent``: change some fields of one agent's definition;
- ``AgentStates``: status / last-seen / failure-count changes (drain, undrain, offline,
  heartbeats, the liveness check, the dispatcher's degraded marks), each optionally
  conditional on the status it finds;
- ``RemoveAgent``: a tombstone (``removed``), so a reader of changes sees it go;
- ``AgentNotes``: what the dispatcher records with its claims: the agent each claimed
  dispatch (and its run) was assigned to, the agent whose worker claimed a run's lease
  (``external``), and why a dispatch waits.

Every write to an agent row gives it the next ``rev``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shepherd.store.models import AgentSpec

__all__ = [
    "AGENT_OP_TYPES",
    "AgentNotes",
    "AgentOp",
    "AgentState",
    "AgentStates",
    "RemoveAgent",
    "SaveAgent",
    "UpdateAgent",
]


class SaveAgent(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Returns ``added``, ``updated`` (register: it existed) or ``exists`` (add: the id
    is taken, nothing written)."""

    spec: AgentSpec
    source: str  # api | config | gateway
    mode: Literal["add", "register"]
    now: float


class UpdateAgent(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """``changes``: column → value (name, capabilities as a list, policy,
    max_concurrent, delivery, model, wake, wake_timeout). Returns True if it exists."""

    id: str
    changes: dict[str, Any]
    now: float


class AgentState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str | None = None  # None: unchanged
    seen: float | None = None  # last seen (a heartbeat)
    failures: int | None = None  # consecutive failed runs
    # apply only while the stored status is one of these (None: whatever it is)
    when: tuple[str, ...] | None = None


class AgentStates(msgspec.Struct, frozen=True, tag=True):
    """Returns, per item, the status the agent has after it (None: no such agent)."""

    items: list[AgentState]
    now: float


class RemoveAgent(msgspec.Struct, frozen=True, tag=True):
    """Returns True if the agent existed."""

    id: str
    now: float


class AgentNotes(msgspec.Struct, frozen=True, tag=True):
    """``assigned``: (dispatch id, agent) of claimed dispatches (the agent goes on the
    dispatch and its running run, ``now`` is the dispatch's ``assigned_at``, the wait
    reason is cleared); ``waiting``: (dispatch id, reason) of dispatches that wait for
    an agent; ``claimed``: (run id, dispatch id, agent, at) of runs whose lease a worker
    claimed (the agent goes on that run, finished or not, and on its dispatch while it
    is the dispatch's current run, ``at`` its ``assigned_at``)."""

    assigned: list[tuple[int, str]]
    waiting: list[tuple[int, str]]
    states: list[AgentState]
    now: float
    claimed: list[tuple[int, int, str, float]] = msgspec.field(default_factory=list)


AgentOp = SaveAgent | UpdateAgent | AgentStates | RemoveAgent | AgentNotes
AGENT_OP_TYPES: tuple[type, ...] = (SaveAgent, UpdateAgent, AgentStates, RemoveAgent, AgentNotes)
