"""Write ops on jobs and the scheduler's commit (``RecordSlots``: due slots' dispatches,
skipped slots, next fire time)."""

from __future__ import annotations

from typing import Literal

import msgspec

from shepherd.store.models import SlotSkip
from shepherd.store.ops.dispatches import NewDispatch

__all__ = [
    "DeleteJob",
    "RecordSlots",
    "SaveJob",
    "SetJobState",
    "SkippedSlot",
    "SlotFailed",
    "SlotItem",
]


class SaveJob(msgspec.Struct, frozen=True, tag=True):
    """Insert or replace a job by name. Returns the job id. A child job (its spec's
    ``parent`` set) is checked against the stored jobs in the same transaction (``store.chains.
    graph_problem``: the parent exists, no cycle, depth): a ConfigError naming
    ``parent`` fails the op and nothing is stored.

    Unless ``kept`` (the job stays enabled on the same schedule, its next fire time
    carried over), the slots the scheduler committed ahead of time (``schedule``
    dispatches still queued for a slot after ``now``) are withdrawn in the same
    transaction: the scheduler plans the job again from its new state."""

    name: str
    executor: str
    enabled: bool
    spec: bytes
    next_run_at: float | None
    now: float
    anchor: float | None = None
    kept: bool = False


class DeleteJob(msgspec.Struct, frozen=True, tag=True):
    """Remove a job; its queued dispatches are cancelled. Returns True if it existed.
    ``refuse_parent``: a job that is the parent of other jobs is not removed (a
    ConfigError names its children); else its children are left orphaned (inert)."""

    job_id: int
    now: float
    refuse_parent: bool = False


class SetJobState(msgspec.Struct, frozen=True, tag=True):
    job_id: int
    now: float
    next_run_at: float | None = None
    set_next: bool = False
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int | None = None
    enabled: bool | None = None


class SkippedSlot(msgspec.Struct, frozen=True, kw_only=True):
    """A scheduled slot that does not run: recorded as a ``skipped`` run with the reason."""

    slot: float | None
    reason: SlotSkip
    error: str


class SlotItem(msgspec.Struct, frozen=True, kw_only=True):
    """One job's part of a ``RecordSlots`` op.

    ``next_run_at``, the dispatches and the skipped records are written only if the
    job is still enabled and its stored ``next_run_at`` is still ``expect_next``
    (compare-and-set: a concurrent change of the job wins, the scheduler reloads it).
    ``last_*`` / ``consecutive_errors`` are written whenever the job exists. ``finish``
    ends a job after its last run: ``disable`` (writing ``spec``) or ``delete``.
    ``withdraw``: the error backoff passed over the slot the scheduler committed ahead
    (its ``skipped`` record is in ``skipped``): that dispatch, still queued for a slot
    after ``now``, is withdrawn as ``SaveJob`` withdraws one.
    """

    job_id: int
    job_name: str
    expect_next: float | None = None
    set_next: bool = True
    next_run_at: float | None = None
    dispatches: list[NewDispatch] = msgspec.field(default_factory=list)
    skipped: list[SkippedSlot] = msgspec.field(default_factory=list)
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int | None = None
    finish: Literal["", "disable", "delete"] = ""
    spec: bytes | None = None
    withdraw: bool = False


class RecordSlots(msgspec.Struct, frozen=True, tag=True):
    """The scheduler's commit: for each job, its due slots' dispatches (kind
    ``schedule``, unique per (job, slot)), a record for every slot that does not run,
    its next fire time and its run bookkeeping, in one transaction. Returns per item
    ``None`` when the compare-and-set failed (job gone, disabled or changed), else
    ``list[tuple[id, seq] | None]`` for its dispatches (None: the slot already has one),
    or ``SlotFailed`` when that item's values could not be written: that item alone
    is rolled back, the other items commit."""

    items: list[SlotItem]
    origin: str
    now: float


class SlotFailed(msgspec.Struct, frozen=True):
    """A ``RecordSlots`` item that was rolled back on its own; ``error`` says why."""

    error: str
