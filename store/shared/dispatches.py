"""The engine-neutral half of inserting dispatches: the columns every new dispatch
row fills and their values from a ``NewDispatch``, shared by ``store.sqlite.dispatches``
and ``store.postgres.dispatches`` (each builds its own statement around them)."""

from __future__ import annotations

from typing import Any

from shepherd.store.ops import NewDispatch

__all__ = ["INSERT_COLUMNS", "dispatch_values"]

# status is always 'queued' at insert (the approval gate may hold the row afterwards)
INSERT_COLUMNS = (
    "id",
    "seq",
    "origin",
    "job_id",
    "job_name",
    "kind",
    "status",
    "priority",
    "not_before",
    "expires_at",
    "attempt",
    "max_attempts",
    "payload",
    "idempotency_key",
    "slot",
    "parent_run_id",
    "created_at",
    "updated_at",
    "producer_key",
    "needs",
    "owner",
)


def dispatch_values(
    r: NewDispatch, dispatch_id: int, seq: int, origin: str, now: float
) -> tuple[Any, ...]:
    """The values of ``INSERT_COLUMNS`` but ``status`` for row ``r``; a row without a
    slot stores its ``idempotency_key`` as its producer key too."""
    return (
        dispatch_id,
        seq,
        origin,
        r.job_id,
        r.job_name,
        r.kind,
        r.priority,
        r.not_before,
        r.expires_at,
        r.attempt,
        r.max_attempts,
        r.payload,
        r.idempotency_key,
        r.slot,
        r.parent_run_id,
        now,
        now,
        r.idempotency_key if r.slot is None else None,
        r.needs,
        r.owner,
    )
