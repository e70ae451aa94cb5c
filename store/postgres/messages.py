"""PostgreSQL SQL of the message ops and the inbox queries (``messages`` table), as
``store.sqlite.messages``: the column list, the OCS inbox order and the row decoder are
``store.shared.messages``'. Every write is one conditional statement (the status it
moves from is in its ``WHERE``), so two nodes marking the same message change it once.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shepherd.store.models import Message
from shepherd.store.ops import ExpireMessages, InsertMessages, MarkMessages
from shepherd.store.shared.messages import (
    INBOX_ORDER,
    MESSAGE_COLUMNS,
    MESSAGE_INSERT_COLUMNS,
    message,
    message_values,
)

__all__ = [
    "expire_messages",
    "get_message",
    "inbox",
    "insert_messages",
    "list_messages",
    "mark_messages",
    "rowcount",
    "thread",
]

_INSERT = (
    f"INSERT INTO messages ({MESSAGE_INSERT_COLUMNS}, status) VALUES"
    f" ({', '.join(f'${i}' for i in range(1, 17))}, 'pending') RETURNING id"
)


def rowcount(status: str) -> int:
    """The row count of a command's status (``UPDATE 3``, ``DELETE 0``, ``INSERT 0 1``)."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


async def insert_messages(conn: asyncpg.Connection, op: InsertMessages) -> list[int]:
    ids: list[int] = []
    for m in op.rows:
        ids.append(int(await conn.fetchval(_INSERT, *message_values(m, op.now))))
    return ids


async def mark_messages(conn: asyncpg.Connection, op: MarkMessages) -> int:
    if not op.ids:
        return 0
    if op.status == "delivered":
        sql = (
            "UPDATE messages SET status = 'delivered', delivered_at = $1,"
            " delivery_attempts = delivery_attempts + 1"
            " WHERE status = 'pending' AND id = ANY($2::bigint[])"
        )
    elif op.status == "ack":  # any status; read if pending / delivered (OCS ackMessage)
        sql = (
            "UPDATE messages SET ack_at = COALESCE(ack_at, $1),"
            " read_at = CASE WHEN status IN ('pending', 'delivered') THEN $1 ELSE read_at END,"
            " status = CASE WHEN status IN ('pending', 'delivered') THEN 'read' ELSE status END"
            " WHERE id = ANY($2::bigint[])"
        )
    elif op.status == "read":
        sql = (
            "UPDATE messages SET status = 'read', read_at = $1, ack_at = COALESCE(ack_at, $1),"
            " delivered_at = COALESCE(delivered_at, $1)"
            " WHERE status IN ('pending', 'delivered') AND id = ANY($2::bigint[])"
        )
    else:
        raise ValueError(f"cannot mark messages {op.status!r}")
    return rowcount(await conn.execute(sql, float(op.now), list(op.ids)))


async def expire_messages(conn: asyncpg.Connection, op: ExpireMessages) -> int:
    return rowcount(
        await conn.execute(
            "UPDATE messages SET status = 'expired' WHERE status IN ('pending', 'delivered')"
            " AND expires_at IS NOT NULL AND expires_at < $1",
            float(op.now),
        )
    )


async def inbox(
    conn: asyncpg.Connection,
    agent: str,
    *,
    statuses: tuple[str, ...] = ("pending",),
    limit: int = 100,
    now: float | None = None,
) -> list[Message]:
    """Messages to ``agent`` (or ``broadcast``) in OCS inbox order; not yet expired
    ones only when ``now`` is given."""
    sql = (
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE to_agent IN ($1, 'broadcast')"
        " AND status = ANY($2::text[])"
    )
    args: list[Any] = [agent, list(statuses)]
    if now is not None:
        sql += " AND (expires_at IS NULL OR expires_at >= $3)"
        args.append(float(now))
    sql += f" ORDER BY {INBOX_ORDER} LIMIT ${len(args) + 1}"
    return [message(r) for r in await conn.fetch(sql, *args, limit)]


async def list_messages(
    conn: asyncpg.Connection,
    *,
    to_agent: str | None = None,
    from_agent: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Message]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("to_agent", to_agent), ("from_agent", from_agent), ("status", status)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages {clause} ORDER BY id DESC LIMIT ${len(args) + 1}",
        *args,
        limit,
    )
    return [message(r) for r in rows]


async def get_message(conn: asyncpg.Connection, message_id: int) -> Message | None:
    row = await conn.fetchrow(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1", message_id)
    return None if row is None else message(row)


async def thread(conn: asyncpg.Connection, message_id: int, *, limit: int = 1000) -> list[Message]:
    """The whole conversation ``message_id`` belongs to: its root (followed up the
    ``reply_to`` links) and every reply below it, oldest first."""
    sql = (
        "WITH RECURSIVE up(id, reply_to, depth) AS ("
        " SELECT id, reply_to, 0 FROM messages WHERE id = $1"
        " UNION ALL SELECT m.id, m.reply_to, up.depth + 1 FROM messages m"
        " JOIN up ON m.id = up.reply_to WHERE up.depth < 1000),"
        " root(id) AS (SELECT id FROM up ORDER BY depth DESC LIMIT 1),"
        " down(id) AS (SELECT id FROM root"
        " UNION SELECT m.id FROM messages m JOIN down ON m.reply_to = down.id)"
        f" SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT id FROM down)"
        " ORDER BY created_at, id LIMIT $2"
    )
    return [message(r) for r in await conn.fetch(sql, message_id, limit)]
