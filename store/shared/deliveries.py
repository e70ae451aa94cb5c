"""Engine-neutral pieces of the announce deliveries: the column list both engines
select, the row → ``Delivery`` decoder and what one send attempt makes of a row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shepherd.store.models import Delivery
from shepherd.store.ops import Attempt, NewDelivery

__all__ = [
    "DELIVERY_COLUMNS",
    "DELIVERY_INSERT_COLUMNS",
    "attempt_outcome",
    "delivery",
    "delivery_values",
]

DELIVERY_COLUMNS = (
    "id, kind, status, body, channel, target, attempts, max_attempts, created_at, updated_at,"
    " next_attempt_at, last_error, sink, sent_at, job_id, job_name, run_id, dispatch_id, outcome"
)

# what an insert writes, in ``delivery_values`` order (status 'pending', attempts 0)
DELIVERY_INSERT_COLUMNS = (
    "kind, channel, target, body, job_id, job_name, run_id, dispatch_id, outcome,"
    " max_attempts, next_attempt_at, created_at, updated_at"
)


def delivery_values(d: NewDelivery, now: float) -> tuple[Any, ...]:
    """A ``NewDelivery``'s values for ``DELIVERY_INSERT_COLUMNS``."""
    return (
        d.kind,
        d.channel,
        d.target,
        d.body,
        d.job_id,
        d.job_name,
        d.run_id,
        d.dispatch_id,
        d.outcome,
        d.max_attempts,
        float(d.next_attempt_at),
        float(now),
        float(now),
    )


def attempt_outcome(a: Attempt, now: float) -> tuple[str, float | None, float | None]:
    """(status, next_attempt_at, sent_at) of a pending delivery after attempt ``a``:
    sent; pending again (a retry is due); or failed (no retry)."""
    if a.ok:
        return "sent", None, float(now)
    if a.next_attempt_at is not None:
        return "pending", float(a.next_attempt_at), None
    return "failed", None, None


def delivery(r: Sequence[Any]) -> Delivery:
    """A row of ``DELIVERY_COLUMNS`` as a ``Delivery``."""
    return Delivery(
        id=r[0], kind=r[1], status=r[2], body=r[3], channel=r[4], target=r[5],
        attempts=r[6], max_attempts=r[7], created_at=r[8], updated_at=r[9],
        next_attempt_at=r[10], last_error=r[11], sink=r[12], sent_at=r[13], job_id=r[14],
        job_name=r[15], run_id=r[16], dispatch_id=r[17], outcome=r[18],
    )  # fmt: skip
