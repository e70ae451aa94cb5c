"""SQL of the message ops and the inbox queries (``messages`` table); the column list,
the OCS inbox order and the row decoder are ``store.shared.messages``'.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from shepherd.store.models import Message
from shepherd.store.ops import ExpireMessages, InsertMessages, MarkMessages
from shepherd.store.shared.messages import INBOX_ORDER as _INBOX_ORDER
from shepherd.store.shared.messages import MESSAGE_COLUMNS as _MESSAGE_COLUMNS
from shepherd.store.shared.messages import MESSAGE_INSERT_COLUMNS, message_values
from shepherd.store.shared.messages import message as _message


def insert_messages(conn: sqlite3.Connection, op: InsertMessages) -> list[int]:
    ids: list[int] = []
    for m in op.rows:
        cur = conn.execute(
            f"INSERT INTO messages ({MESSAGE_INSERT_COLUMNS}, status)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'pending')",
            message_values(m, op.now),
        )
        ids.append(int(cur.lastrowid or 0))
    return ids


def mark_messages(conn: sqlite3.Connection, op: MarkMessages) -> int:
    if not op.ids:
        return 0
    marks = ",".join("?" * len(op.ids))
    if op.status == "delivered":
        sql = (
            "UPDATE messages SET status = 'delivered', delivered_at = ?,"
            " delivery_attempts = delivery_attempts + 1"
            f" WHERE +status = 'pending' AND id IN ({marks})"  # by id: see claims.QUEUED_AMONG
        )
    elif op.status == "ack":  # any status; read if pending / delivered (OCS ackMessage)
        sql = (
            "UPDATE messages SET ack_at = COALESCE(ack_at, ?),"
            " read_at = CASE WHEN status IN ('pending', 'delivered') THEN ? ELSE read_at END,"
            " status = CASE WHEN status IN ('pending', 'delivered') THEN 'read' ELSE status END"
            f" WHERE id IN ({marks})"
        )
        return conn.execute(sql, [op.now, op.now, *op.ids]).rowcount
    elif op.status == "read":
        sql = (
            "UPDATE messages SET status = 'read', read_at = ?, ack_at = COALESCE(ack_at, ?),"
            " delivered_at = COALESCE(delivered_at, ?)"
            f" WHERE status IN ('pending', 'delivered') AND id IN ({marks})"
        )
        return conn.execute(sql, [op.now, op.now, op.now, *op.ids]).rowcount
    else:
        raise ValueError(f"cannot mark messages {op.status!r}")
    return conn.execute(sql, [op.now, *op.ids]).rowcount


def expire_messages(conn: sqlite3.Connection, op: ExpireMessages) -> int:
    return conn.execute(
        "UPDATE messages SET status = 'expired' WHERE status IN ('pending', 'delivered')"
        " AND expires_at IS NOT NULL AND expires_at < ?",
        (op.now,),
    ).rowcount


def inbox(
    conn: sqlite3.Connection,
    agent: str,
    *,
    statuses: tuple[str, ...] = ("pending",),
    limit: int = 100,
    now: float | None = None,
) -> list[Message]:
    """Messages to ``agent`` (or ``broadcast``) in OCS inbox order; not yet expired
    ones only when ``now`` is given."""
    marks = ",".join("?" * len(statuses))
    sql = (
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE to_agent IN (?, 'broadcast')"
        f" AND status IN ({marks})"
    )
    args: list[Any] = [agent, *statuses]
    if now is not None:
        sql += " AND (expires_at IS NULL OR expires_at >= ?)"
        args.append(now)
    sql += f" ORDER BY {_INBOX_ORDER} LIMIT ?"
    return [_message(r) for r in conn.execute(sql, [*args, limit])]


def list_messages(
    conn: sqlite3.Connection,
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
            where.append(f"{column} = ?")
            args.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages {clause} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    )
    return [_message(r) for r in rows]


def get_message(conn: sqlite3.Connection, message_id: int) -> Message | None:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return None if row is None else _message(row)


def thread(conn: sqlite3.Connection, message_id: int, *, limit: int = 1000) -> list[Message]:
    """The whole conversation ``message_id`` belongs to: its root (followed up the
    ``reply_to`` links) and every reply below it, oldest first."""
    sql = (
        "WITH RECURSIVE up(id, reply_to, depth) AS ("
        " SELECT id, reply_to, 0 FROM messages WHERE id = ?"
        " UNION ALL SELECT m.id, m.reply_to, up.depth + 1 FROM messages m"
        " JOIN up ON m.id = up.reply_to WHERE up.depth < 1000),"
        " root(id) AS (SELECT id FROM up ORDER BY depth DESC LIMIT 1),"
        " down(id) AS (SELECT id FROM root"
        " UNION SELECT m.id FROM messages m JOIN down ON m.reply_to = down.id)"
        f" SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT id FROM down)"
        " ORDER BY created_at, id LIMIT ?"
    )
    return [_message(r) for r in conn.execute(sql, (message_id, limit))]
