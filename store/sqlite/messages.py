"""SQL of the message ops and the inbox queries (``messages`` table).

Inbox order (OCS): kind constraint, decision, fact, task, preference, then the rest;
priority high → low; oldest first. ``to_agent = 'broadcast'`` reaches every agent.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from shepherd.store.models import Message
from shepherd.store.ops import ExpireMessages, InsertMessages, MarkMessages


def insert_messages(conn: sqlite3.Connection, op: InsertMessages) -> list[int]:
    ids: list[int] = []
    for m in op.rows:
        cur = conn.execute(
            "INSERT INTO messages (from_agent, to_agent, kind, subject, body, metadata,"
            " priority, channel, delivery_to, status, ack_required, expires_at, created_at,"
            " job_id, run_id, owner, reply_to)"
            " VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?,?,?,?,?,?)",
            (
                m.from_agent,
                m.to_agent,
                m.kind,
                m.subject,
                m.body,
                m.metadata,
                m.priority,
                m.channel,
                m.delivery_to,
                int(m.ack_required),
                m.expires_at,
                op.now,
                m.job_id,
                m.run_id,
                m.owner,
                m.reply_to,
            ),
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
            f" WHERE status = 'pending' AND id IN ({marks})"
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


_MESSAGE_COLUMNS = (
    "id, from_agent, to_agent, kind, subject, body, priority, status, created_at, metadata,"
    " channel, delivery_to, expires_at, delivered_at, read_at, job_id, run_id, owner, reply_to,"
    " last_error, ack_at"
)

_INBOX_ORDER = (
    "CASE kind WHEN 'constraint' THEN 0 WHEN 'decision' THEN 1 WHEN 'fact' THEN 2"
    " WHEN 'task' THEN 3 WHEN 'preference' THEN 4 ELSE 5 END, priority DESC, created_at, id"
)


def _message(r: tuple[Any, ...]) -> Message:
    return Message(
        id=r[0], from_agent=r[1], to_agent=r[2], kind=r[3], subject=r[4], body=r[5],
        priority=r[6], status=r[7], created_at=r[8],
        metadata=None if r[9] is None else msgspec.json.decode(r[9]),
        channel=r[10], delivery_to=r[11], expires_at=r[12], delivered_at=r[13],
        read_at=r[14], job_id=r[15], run_id=r[16], owner=r[17], reply_to=r[18],
        last_error=r[19], ack_at=r[20],
    )  # fmt: skip


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
