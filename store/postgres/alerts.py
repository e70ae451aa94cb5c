"""PostgreSQL SQL of dead-letter alerts (mirrors ``store.sqlite.alerts``):
``queue_alert`` runs inside the op (and so the transaction) that dead-letters a
dispatch and inserts its alert delivery row, when the job or ``[delivery]
dead_letter_to`` asks for one (``store.alerts`` decides who and what). The router
sends it like any other delivery (kind ``dead_letter``)."""

from __future__ import annotations

import asyncpg

from shepherd.store.alerts import DEAD_LETTER_COLUMNS, alert_row
from shepherd.store.ops import DeadLetterAlert

__all__ = ["queue_alert"]

_DEAD = (
    f"SELECT {DEAD_LETTER_COLUMNS} FROM dispatches d LEFT JOIN jobs j ON j.id = d.job_id"
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
    delivery = None if row is None else alert_row(row, dispatch_id, alert)
    if delivery is None:
        return None
    return int(await conn.fetchval(_INSERT, *delivery, float(now)))
