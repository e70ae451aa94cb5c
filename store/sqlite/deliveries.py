"""SQL of the delivery ops and queries (``deliveries`` table: announce deliveries to a
sink, retried with backoff)."""

from __future__ import annotations

import sqlite3
from typing import Any

from shepherd.store.models import Delivery
from shepherd.store.ops import InsertDeliveries, RecordAttempts, RequeueDeliveries
from shepherd.store.shared.deliveries import DELIVERY_COLUMNS as _DELIVERY_COLUMNS
from shepherd.store.shared.deliveries import (
    DELIVERY_INSERT_COLUMNS,
    attempt_outcome,
    delivery_values,
)
from shepherd.store.shared.deliveries import delivery as _delivery


def insert_deliveries(conn: sqlite3.Connection, op: InsertDeliveries) -> list[int]:
    ids: list[int] = []
    for d in op.rows:
        cur = conn.execute(
            f"INSERT INTO deliveries ({DELIVERY_INSERT_COLUMNS}, status, attempts)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',0)",
            delivery_values(d, op.now),
        )
        ids.append(int(cur.lastrowid or 0))
    return ids


def record_attempts(conn: sqlite3.Connection, op: RecordAttempts) -> list[bool]:
    out: list[bool] = []
    for a in op.attempts:
        status, next_at, sent_at = attempt_outcome(a, op.now)
        cur = conn.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
            " last_error = COALESCE(?, last_error), sink = COALESCE(?, sink), sent_at = ?,"
            " updated_at = ? WHERE id = ? AND status = 'pending'",
            (status, next_at, a.error, a.sink, sent_at, op.now, a.id),
        )
        out.append(cur.rowcount == 1)
    return out


def requeue_deliveries(conn: sqlite3.Connection, op: RequeueDeliveries) -> list[int]:
    done: list[int] = []
    for delivery_id in op.ids:
        cur = conn.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?,"
            " max_attempts = attempts + max_attempts, updated_at = ?"
            " WHERE id = ? AND status = 'failed'",
            (op.now, op.now, delivery_id),
        )
        if cur.rowcount == 1:
            done.append(delivery_id)
    return done


def get_delivery(conn: sqlite3.Connection, delivery_id: int) -> Delivery | None:
    row = conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()
    return None if row is None else _delivery(row)


def list_deliveries(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    job: str | None = None,
    run_id: int | None = None,
    limit: int = 100,
) -> list[Delivery]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("status", status), ("job_name", job), ("run_id", run_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries {clause} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    )
    return [_delivery(r) for r in rows]


def pending_deliveries(conn: sqlite3.Connection, *, limit: int = 10_000) -> list[Delivery]:
    """Every ``pending`` delivery, earliest due first (the router reloads them on start)."""
    rows = conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status = 'pending'"
        " ORDER BY next_attempt_at, id LIMIT ?",
        (limit,),
    )
    return [_delivery(r) for r in rows]
