"""SQL of dead-letter alerts: ``queue_alert`` runs inside the op (and so the
transaction) that dead-letters a dispatch and inserts its alert delivery row, when the
job or ``[delivery] dead_letter_to`` asks for one (``store.alerts`` decides who and
what). The router sends it like any other delivery (kind ``dead_letter``)."""

from __future__ import annotations

import sqlite3

from shepherd.store.alerts import DEAD_LETTER_COLUMNS, alert_row
from shepherd.store.ops import DeadLetterAlert

__all__ = ["queue_alert"]


def queue_alert(
    conn: sqlite3.Connection, dispatch_id: int, now: float, alert: DeadLetterAlert | None
) -> int | None:
    """Insert the alert of the dead letter ``dispatch_id``; its delivery id, or None."""
    row = conn.execute(
        f"SELECT {DEAD_LETTER_COLUMNS} FROM dispatches d LEFT JOIN jobs j ON j.id = d.job_id"
        " WHERE d.id = ? AND d.status = 'dead'",
        (dispatch_id,),
    ).fetchone()
    delivery = None if row is None else alert_row(row, dispatch_id, alert)
    if delivery is None:
        return None
    cur = conn.execute(
        "INSERT INTO deliveries (kind, status, channel, target, body, job_id, job_name,"
        " run_id, dispatch_id, outcome, attempts, max_attempts, next_attempt_at,"
        " created_at, updated_at) VALUES ('dead_letter','pending',?,?,?,?,?,?,?,?,0,?,?,?,?)",
        (*delivery, now, now, now),
    )
    return int(cur.lastrowid or 0)
