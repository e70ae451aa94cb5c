"""Write ops on dispatches: new dispatches, claims, outcomes, settling, cancel, dead letters.

Fencing: a run's outcome is accepted only while that run is ``running`` and is still
the current run of its dispatch (``FinishRun``); a claim only takes a ``queued``
dispatch (``ClaimRun``). An engine applies both as conditional updates, so two
writers, or a late completion after a timeout, can never both win.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shepherd.store.keys import DEFAULT_TTL
from shepherd.store.models import Outcome, SettleReason
from shepherd.store.ops.messages import DeadLetterAlert

__all__ = [
    "CancelDispatch",
    "ClaimRun",
    "ClaimRuns",
    "FinishRun",
    "FinishRuns",
    "InsertDispatches",
    "NewDispatch",
    "PurgeDead",
    "RetryDead",
    "Settle",
    "SettleQueued",
]


class NewDispatch(msgspec.Struct, frozen=True, kw_only=True):
    job_id: int
    job_name: str
    kind: str
    priority: int
    not_before: float
    max_attempts: int
    expires_at: float | None = None
    payload: bytes | None = None
    idempotency_key: str | None = None
    slot: float | None = None
    parent_run_id: int | None = None
    attempt: int = 0
    needs: str | None = None  # its own required capabilities, comma-joined (agents)
    owner: str | None = None


class InsertDispatches(msgspec.Struct, frozen=True, tag=True):
    """Returns, per row: ``(id, seq)`` of the new dispatch; the id (an ``int``) of the
    dispatch that already holds the row's producer key; or None where the (job, slot)
    already has a dispatch. ``(id, 0)``: the new dispatch is held by its job's approval
    gate (``awaiting_approval``) or was cancelled by a full approval backlog; it is not
    for the dispatcher (``store.sqlite.approvals.gate``).

    A row without a slot that carries an ``idempotency_key`` carries its producer's key:
    it is also stored as ``producer_key``, which the unique index ``dispatches_producer``
    binds to this one dispatch of the job for as long as the row exists (whatever its
    state; only ``dlq retry`` runs a dead one again)."""

    rows: list[NewDispatch]
    origin: str
    now: float


class ClaimRun(msgspec.Struct, frozen=True, kw_only=True):
    dispatch_id: int
    attempt: int
    idempotency_key: str | None = None
    job_id: int = 0
    key_ttl: float = DEFAULT_TTL


class ClaimRuns(msgspec.Struct, frozen=True, tag=True):
    """queued → running + a new run row + its idempotency key claimed. Returns
    ``list[run_id | None | 0]``: None when the dispatch is no longer queued, 0 when its
    key is claimed by another run (the dispatch is then recorded ``skipped``)."""

    claims: list[ClaimRun]
    instance: str
    now: float
    # the claiming node's epoch (store.cluster): 0 = no fencing (SQLite); else a stale
    # epoch makes every claim lost (None) on an engine shared by several nodes
    epoch: int = 0


class FinishRun(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    dispatch_id: int
    outcome: Outcome
    next: Literal["done", "retry", "dead", "cancelled", "requeue"]
    error: str | None = None
    result: bytes | None = None
    reason: str | None = None
    not_before: float | None = None  # for retry / requeue
    dead_reason: str | None = None
    refund: bool = False  # requeue without counting the attempt (a deferral)
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stdout: str | None = None
    stderr: str | None = None
    details: bytes | None = None


class FinishRuns(msgspec.Struct, frozen=True, tag=True):
    """Returns ``list[int | None]`` (a ``store.ops.chains.Finished``): the new seq for
    requeued dispatches, 0 for accepted final outcomes, None where fencing rejected the
    outcome; its ``children`` are the chain dispatches the accepted final outcomes
    fired, inserted in the same transaction (README "Chains")."""

    finals: list[FinishRun]
    now: float
    origin: str = ""
    alert: DeadLetterAlert | None = None  # a dead letter's alert delivery, same transaction
    # the deciding node's epoch (its name is ``origin``): 0 = no fencing (SQLite); else
    # a stale epoch refuses every outcome (None) on an engine shared by several nodes
    epoch: int = 0


class Settle(msgspec.Struct, frozen=True, kw_only=True):
    dispatch_id: int
    status: Literal["done", "dead", "cancelled"]
    outcome: Literal["skipped", "cancelled"]
    reason: SettleReason
    record_run: bool = True  # leave a ``skipped`` run row saying why


class SettleQueued(msgspec.Struct, frozen=True, tag=True):
    """Queued dispatches that end without running (skipped, expired, job removed).
    Returns ``list[bool]``: whether each was still queued."""

    items: list[Settle]
    now: float
    alert: DeadLetterAlert | None = None  # a dead letter's alert delivery, same transaction


class CancelDispatch(msgspec.Struct, frozen=True, tag=True):
    """Queued → cancelled at once; running → ``cancel_requested`` (the owner stops it).
    Returns the dispatch status after the call, or None if there is no such dispatch."""

    dispatch_id: int
    now: float


class RetryDead(msgspec.Struct, frozen=True, tag=True):
    """Dead → queued with fresh attempts. Returns the ids requeued."""

    ids: list[int]
    now: float
    origin: str = ""


class PurgeDead(msgspec.Struct, frozen=True, tag=True):
    """Delete dead letters (and their runs): the given ids, or all older than ``before``."""

    ids: list[int] | None = None
    before: float | None = None
