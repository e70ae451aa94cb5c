"""Message types that cross actor boundaries: the dispatcher's inbox and outbound events.

Every message is a frozen msgspec Struct carrying ids and values, never live objects
(reply slots excepted). ``DispatcherMsg`` is the dispatcher's tagged union. The module
is longer than most because every message that crosses an actor boundary is declared
here, where a reader finds any of them without a search.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shepherd.actors.primitives.mailbox import Reply
from shepherd.store import models
from shepherd.store.models import Dispatch, priority_rank
from shepherd.store.ops import NewDispatch

__all__ = [
    "AgentWoken",
    "Cancel",
    "DispatchQueued",
    "DispatcherMsg",
    "Drain",
    "Drained",
    "Enqueued",
    "Entry",
    "Event",
    "JobsChanged",
    "NodeChanged",
    "Outcome",
    "OutcomeEvent",
    "OutcomeStatus",
    "Poke",
    "Probe",
    "Queued",
    "Quiesce",
    "RunClaimed",
    "RunFinished",
    "RunOutcome",
    "RunStarted",
    "SchedulerMsg",
    "SlotRecord",
    "Tick",
    "entry_from_dispatch",
    "entry_from_new",
]


RunOutcome = Literal["ok", "error", "timeout", "crashed", "cancelled"]


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """A queued dispatch as the dispatcher holds it in memory."""

    id: int
    seq: int
    job_id: int
    priority: int  # rank: 0 critical … 4 background
    not_before: float
    attempt: int  # attempts already started
    max_attempts: int
    kind: str = "enqueue"
    expires_at: float | None = None
    payload: dict[str, Any] | None = None
    idempotency_key: str | None = None
    slot: float | None = None
    parent_run_id: int | None = None
    # assignment (actors/dispatcher/agents.py): the dispatch's own capabilities and
    # owner; the agent admission chose for this attempt, and that agent's model
    needs: tuple[str, ...] = ()
    owner: str | None = None
    agent: str | None = None
    agent_model: str | None = None


def entry_from_dispatch(d: Dispatch) -> Entry:
    """The dispatcher's entry for a dispatch read from the store."""
    return _entry(d, d.id, d.seq, priority_rank(d.priority), d.payload)


def _entry(
    d: Dispatch | NewDispatch,
    dispatch_id: int,
    seq: int,
    priority: int,
    payload: dict[str, Any] | None,
) -> Entry:
    # Field by field on purpose (as RunContext from RunOrder in actors/run.py): the type
    # checker sees every field that crosses from a stored row into the queue.
    return Entry(
        id=dispatch_id,
        seq=seq,
        job_id=d.job_id,
        priority=priority,
        not_before=d.not_before,
        attempt=d.attempt,
        max_attempts=d.max_attempts,
        kind=d.kind,
        expires_at=d.expires_at,
        payload=payload,
        idempotency_key=d.idempotency_key,
        slot=d.slot,
        parent_run_id=d.parent_run_id,
        needs=tuple(d.needs.split(",") if isinstance(d.needs, str) else d.needs or ()),
        owner=d.owner,
    )


# -- the dispatcher's inbox ---------------------------------------------------------


class Enqueued(msgspec.Struct, frozen=True, tag=True):
    """Committed dispatches to admit (from the runtime, the scheduler, the router)."""

    entries: list[Entry]


class RunFinished(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A run actor's one and only report."""

    run_id: int
    dispatch_id: int
    outcome: RunOutcome
    error: str | None = None
    result: Any = None
    retry: bool = True
    retry_after: float | None = None
    reason: str | None = None
    deliver: bool = True
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stdout: str | None = None
    stderr: str | None = None
    details: dict[str, Any] | None = None


class RunClaimed(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """From a run actor: a worker claimed the run's lease (``external``) for ``agent``
    at ``at`` (wall), where assignment had chosen no agent or another: the run is that
    agent's from now on."""

    run_id: int
    dispatch_id: int
    agent: str
    at: float


class Cancel(msgspec.Struct, frozen=True, tag=True):
    dispatch_id: int
    reply: Reply[str | None]


class Poke(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Read again what changed in the store: new ``dispatches``, changed ``jobs``,
    ``cancels`` requested, new or resolved ``approvals``, changed task ``groups``,
    changed ``agents``, changed pauses and rate ``controls`` (another process committed
    them; any combination). With no flag set it only wakes the loop for another pass."""

    dispatches: bool = False
    jobs: bool = False
    cancels: bool = False
    approvals: bool = False
    groups: bool = False
    agents: bool = False
    controls: bool = False

    def __or__(self, other: Poke) -> Poke:
        """Both Pokes' flags (one reload covers several Pokes)."""
        if other == self or other == Poke():
            return self
        return Poke(
            dispatches=self.dispatches or other.dispatches,
            jobs=self.jobs or other.jobs,
            cancels=self.cancels or other.cancels,
            approvals=self.approvals or other.approvals,
            groups=self.groups or other.groups,
            agents=self.agents or other.agents,
            controls=self.controls or other.controls,
        )

    def __bool__(self) -> bool:
        """True when there is something to read again (not a mere wake-up)."""
        return (
            self.dispatches
            or self.jobs
            or self.cancels
            or self.approvals
            or self.groups
            or self.agents
            or self.controls
        )


class JobsChanged(msgspec.Struct, frozen=True, tag=True):
    job_ids: list[int] | None = None  # None: reload all
    # the scheduler withdrew slots of these jobs it had committed ahead (the error
    # backoff passed over them) though the jobs did not change: the dispatcher ends them
    withdrawn: bool = False


class Drain(msgspec.Struct, frozen=True, tag=True):
    grace: float
    reply: Reply[int]


class Drained(msgspec.Struct, frozen=True, tag=True):
    cancelled: int


class Tick(msgspec.Struct, frozen=True, tag=True):
    """From the health monitor: flush heartbeats, look for stale runs."""


class Probe(msgspec.Struct, frozen=True, tag=True):
    """From the health monitor: an executor's gateway answered its health probe or not."""

    executor: str
    healthy: bool


class NodeChanged(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """From the cluster actor: this node's shares of the cluster-wide limits changed (a
    node joined or left), or ``fenced``: the node was declared dead and rescued
    elsewhere, so its in-flight runs are cancelled here (``actors.cluster``)."""

    fenced: bool = False


class Quiesce(msgspec.Struct, frozen=True, tag=True):
    """From ``Runtime.drain``: read the pauses again (one was written), then answer
    (with 0) once no run is in flight here."""

    reply: Reply[int]


class AgentWoken(msgspec.Struct, frozen=True, tag=True):
    """From a wake task (``actors/dispatcher/wake.py``): a sleeping agent's wake hook
    answered (``ok``) or failed (``error``)."""

    agent_id: str
    ok: bool
    error: str | None = None


DispatcherMsg = (
    Enqueued | RunFinished | Cancel | Poke | JobsChanged | Drain | Drained | Tick | Probe | Quiesce
    | AgentWoken | NodeChanged | RunClaimed
)  # fmt: skip


def entry_from_new(new: NewDispatch, dispatch_id: int, seq: int) -> Entry:
    """The dispatcher's entry for a dispatch just inserted from ``new``."""
    payload = msgspec.json.decode(new.payload) if new.payload is not None else None
    return _entry(new, dispatch_id, seq, new.priority, payload)


# -- the scheduler's inbox ----------------------------------------------------------


class Outcome(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A dispatch ended (forwarded from the dispatcher's ``OutcomeEvent``); the
    scheduler acts on those of kind ``schedule`` that are ``final``."""

    job_id: int
    job: str
    dispatch_id: int
    outcome: models.Outcome
    final: bool
    slot: float | None
    kind: str  # the dispatch's kind (open: the Python API may label an enqueue)
    at: float


SchedulerMsg = JobsChanged | Poke | Outcome


# -- events going out (subscribers, waiters, metrics, delivery) ----------------------

# the state an ended run leaves its dispatch in (``queued``: another attempt follows)
OutcomeStatus = Literal["done", "queued", "dead", "cancelled"]
Status = OutcomeStatus


class RunStarted(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A run started. ``agent``: the agent admission assigned ("" when none);
    ``not_before``: when its dispatch became due (pickup latency is ``at`` minus it)."""

    dispatch_id: int
    run_id: int
    job: str
    attempt: int
    at: float
    agent: str = ""
    not_before: float = 0.0


class OutcomeEvent(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A run ended and its dispatch moved on. ``status`` is the dispatch's new state:
    ``done``, ``queued`` (a retry is scheduled at ``next_attempt_at``), ``dead`` or
    ``cancelled``. ``final`` is True when no further attempt will happen."""

    dispatch_id: int
    job: str
    run_id: int | None
    attempt: int
    outcome: models.Outcome  # a run's outcome, or ``skipped`` (ended without running)
    status: OutcomeStatus
    final: bool
    at: float
    job_id: int = 0
    kind: str = "enqueue"
    slot: float | None = None
    error: str | None = None
    result: Any = None
    dead_reason: str | None = None
    next_attempt_at: float | None = None
    deliver: bool = True
    agent: str = ""  # the agent the attempt was assigned to ("" when none)
    # the run's job announces this outcome (``router.delivery.should_announce``, decided
    # where the outcome is: the router hears only these, and dead letters)
    announce: bool = True


class SlotRecord(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A dispatch or scheduled slot that did not run, and why (never a silent drop)."""

    job: str
    reason: models.SkipReason
    dispatch_id: int | None = None
    slot: float | None = None
    at: float = 0.0


class ApprovalsHeld(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Dispatches committed ``awaiting_approval`` by the dispatcher (chain children its
    finalize fired into a gated job): the approvals actor times them out and the router
    sends their requests, at once."""

    dispatch_ids: list[int]
    at: float = 0.0


class Queued(msgspec.Struct, frozen=True, kw_only=True):
    """One dispatch of a ``DispatchQueued``."""

    dispatch_id: int
    job: str
    priority: str  # critical … background
    state: Literal["queued", "awaiting_approval"]
    source: str  # the dispatch's kind: enqueue, schedule, chain, run_now, ...
    not_before: float
    slot: float | None = None


class DispatchQueued(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """New dispatches the dispatcher learned of (one event per batch it took in).
    Built only while someone listens for it (``EventHub.wants``): nothing is spent on
    it per dispatch otherwise."""

    dispatches: list[Queued]
    at: float


Event = RunStarted | OutcomeEvent | SlotRecord | ApprovalsHeld | DispatchQueued
