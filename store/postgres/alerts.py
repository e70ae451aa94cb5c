"""PostgreSQL SQL of dead-letter alerts (mirrors ``store.sqlite.alerts``):
``queue_alert`` runs inside the op (and so the transaction) that dead-letters a
dispatch and inserts its alert delivery row, when the job or ``[delivery]
dead_letter_to`` asks for one (``store.alerts`` decides who and what). The router
sends it like any other delivery (kind ``dead_letter``)."""

from __future__ import annotations

import asyncpg
import msgspec

from shepherd.store.alerts import alert_route, alert_text
from shepherd.store.ops import DeadLetterAlert

__all__ = ["queue_alert"]

_DEAD = (
    "SELECT d.job_id, d.job_name, d.payload, d.attempt, d.max_attempts, d.dead_reason,"
    " d.last_error, d.outcome, j.spec, d.kind,"
    " (SELECT MAX(r.id) FROM runs r WHERE r.dispatch_id = d.id)"
    " FROM dispatches d LEFT JOIN jobs j ON j.id = d.job_id"
    " WHERE d.id = $1 AND d.status = 'dead'"
)
_INSERT = (
    "INSERT INTO deliveries (kind, status, channel, target, body, job_id, job_name,"
    " run_id, dispatch_id, outcome, attempts, max_attempts, next_attempt_at,"
    " created_at, updated_at)"
    " VALUES ('dead_letter', 'pending', $1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $10, $10)"
    " RETURNING id"
)


async def queue_alert(
    conn: asyncpg.Connection, dispatch_id: int, now: float, alert: DeadLetterAlert | None
) -> int | None:
    """Insert the alert of the dead letter ``dispatch_id``; its delivery id, or None."""
    row = await conn.fetchrow(_DEAD, dispatch_id)
    if row is None:
        return None
    job_id, job, payload, attempt, max_attempts, reason, error, outcome, spec, kind, run_id = row
    decoded = msgspec.json.decode(spec) if spec else {}
    options = decoded.get("options") or {}
    route = alert_route(options, alert)
    if route is None:
        return None
    channel, target = route
    body = alert_text(
        job=job,
        target=str(decoded.get("target") or ""),
        executor=str(decoded.get("executor") or "python"),
        payload=msgspec.json.decode(payload) if payload else None,
        attempts=int(attempt or 0),
        max_attempts=int(max_attempts or 0),
        reason=reason,
        error=error,
        dispatch_id=dispatch_id,
        run_id=run_id,
        dispatched_by=str(kind or ""),
    )
    delivery_id = await conn.fetchval(
        _INSERT,
        channel,
        target,
        body,
        job_id,
        job,
        run_id,
        dispatch_id,
        outcome,
        alert.max_attempts if alert is not None else 8,
        float(now),
    )
    return int(delivery_id)
