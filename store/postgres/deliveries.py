"""PostgreSQL SQL of the delivery ops and queries (``deliveries`` table: announce
deliveries to a sink, retried with backoff), as ``store.sqlite.deliveries``; the column
list, the decoder and the rule of one attempt are ``store.shared.deliveries``'. Every
write is conditional on the status it moves from (``pending`` / ``failed``), so two
nodes recording the same attempt change the row once.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shepherd.store.models import Delivery
from shepherd.store.ops import InsertDeliveries, RecordAttempts, RequeueDeliveries
from shepherd.store.postgres.messages import rowcount
from shepherd.store.shared.deliveries import (
    DELIVERY_COLUMNS,
    DELIVERY_INSERT_COLUMNS,
    attempt_outcome,
    delivery,
    delivery_values,
)

__all__ = [
    "get_delivery",
    "insert_deliveries",
    "list_deliveries",
    "pending_deliveries",
    "record_attempts",
    "requeue_deliveries",
]

_INSERT = (
    f"INSERT INTO deliveries ({DELIVERY_INSERT_COLUMNS}, status, attempts) VALUES"
    f" ({', '.join(f'${i}' for i in range(1, 14))}, 'pending', 0) RETURNING id"
)


async def insert_deliveries(conn: asyncpg.Connection, op: InsertDeliveries) -> list[int]:
    ids: list[int] = []
    for d in op.rows:
        ids.append(int(await conn.fetchval(_INSERT, *delivery_values(d, op.now))))
    return ids


async def record_attempts(conn: asyncpg.Connection, op: RecordAttempts) -> list[bool]:
    out: list[bool] = []
    for a in op.attempts:
        status, next_at, sent_at = attempt_outcome(a, op.now)
        done = await conn.execute(
            "UPDATE deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2,"
            " last_error = COALESCE($3, last_error), sink = COALESCE($4, sink), sent_at = $5,"
            " updated_at = $6 WHERE id = $7 AND status = 'pending'",
            status,
            next_at,
            a.error,
            a.sink,
            sent_at,
            float(op.now),
            a.id,
        )
        out.append(rowcount(done) == 1)
    return out


async def requeue_deliveries(conn: asyncpg.Connection, op: RequeueDeliveries) -> list[int]:
    done: list[int] = []
    for delivery_id in op.ids:
        status = await conn.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1,"
            " max_attempts = attempts + max_attempts, updated_at = $1"
            " WHERE id = $2 AND status = 'failed'",
            float(op.now),
            delivery_id,
        )
        if rowcount(status) == 1:
            done.append(delivery_id)
    return done


async def get_delivery(conn: asyncpg.Connection, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1", delivery_id
    )
    return None if row is None else delivery(row)


async def list_deliveries(
    conn: asyncpg.Connection,
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
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries {clause} ORDER BY id DESC"
        f" LIMIT ${len(args) + 1}",
        *args,
        limit,
    )
    return [delivery(r) for r in rows]


async def pending_deliveries(conn: asyncpg.Connection, *, limit: int = 10_000) -> list[Delivery]:
    """Every ``pending`` delivery, earliest due first (the router reloads them on start)."""
    rows = await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'pending'"
        " ORDER BY next_attempt_at, id LIMIT $1",
        limit,
    )
    return [delivery(r) for r in rows]
