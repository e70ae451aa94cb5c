"""SQL of the delivery ops and queries (``deliveries`` table: announce deliveries to a
sink, retried with backoff)."""

from __future__ import annotations

import sqlite3
from typing import Any

from shepherd.store.models import Delivery
from shepherd.store.ops import InsertDeliveries, RecordAttempts, RequeueDeliveries


def insert_deliveries(conn: sqlite3.Connection, op: InsertDeliveries) -> list[int]:
    ids: list[int] = []
    for d in op.rows:
        cur = conn.execute(
            "INSERT INTO deliveries (kind, status, channel, target, body, job_id, job_name,"
            " run_id, dispatch_id, outcome, attempts, max_attempts, next_attempt_at,"
            " created_at, updated_at) VALUES (?,'pending',?,?,?,?,?,?,?,?,0,?,?,?,?)",
            (
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
                d.next_attempt_at,
                op.now,
                op.now,
            ),
        )
        ids.append(int(cur.lastrowid or 0))
    return ids


def record_attempts(conn: sqlite3.Connection, op: RecordAttempts) -> list[bool]:
    out: list[bool] = []
    for a in op.attempts:
        if a.ok:
            status, next_at, sent_at = "sent", None, op.now
        elif a.next_attempt_at is not None:
            status, next_at, sent_at = "pending", a.next_attempt_at, None
        else:
            status, next_at, sent_at = "failed", None, None
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


_DELIVERY_COLUMNS = (
    "id, kind, status, body, channel, target, attempts, max_attempts, created_at, updated_at,"
    " next_attempt_at, last_error, sink, sent_at, job_id, job_name, run_id, dispatch_id, outcome"
)


def _delivery(r: tuple[Any, ...]) -> Delivery:
    return Delivery(
        id=r[0], kind=r[1], status=r[2], body=r[3], channel=r[4], target=r[5],
        attempts=r[6], max_attempts=r[7], created_at=r[8], updated_at=r[9],
        next_attempt_at=r[10], last_error=r[11], sink=r[12], sent_at=r[13], job_id=r[14],
        job_name=r[15], run_id=r[16], dispatch_id=r[17], outcome=r[18],
    )  # fmt: skip


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
