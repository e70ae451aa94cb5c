"""Engine-neutral pieces of the inbox messages: the column list both engines select,
the OCS inbox order, and the row → ``Message`` decoder.

Inbox order (OCS): kind constraint, decision, fact, task, preference, then the rest;
priority high → low; oldest first. ``to_agent = 'broadcast'`` reaches every agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from shepherd.store.models import Message
from shepherd.store.ops import NewMessage

__all__ = ["INBOX_ORDER", "MESSAGE_COLUMNS", "MESSAGE_INSERT_COLUMNS", "message", "message_values"]

MESSAGE_COLUMNS = (
    "id, from_agent, to_agent, kind, subject, body, priority, status, created_at, metadata,"
    " channel, delivery_to, expires_at, delivered_at, read_at, job_id, run_id, owner, reply_to,"
    " last_error, ack_at"
)

INBOX_ORDER = (
    "CASE kind WHEN 'constraint' THEN 0 WHEN 'decision' THEN 1 WHEN 'fact' THEN 2"
    " WHEN 'task' THEN 3 WHEN 'preference' THEN 4 ELSE 5 END, priority DESC, created_at, id"
)

# what an insert writes, in ``message_values`` order (status is always 'pending')
MESSAGE_INSERT_COLUMNS = (
    "from_agent, to_agent, kind, subject, body, metadata, priority, channel, delivery_to,"
    " ack_required, expires_at, created_at, job_id, run_id, owner, reply_to"
)


def message_values(m: NewMessage, now: float) -> tuple[Any, ...]:
    """A ``NewMessage``'s values for ``MESSAGE_INSERT_COLUMNS``."""
    return (
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
        None if m.expires_at is None else float(m.expires_at),
        float(now),
        m.job_id,
        m.run_id,
        m.owner,
        m.reply_to,
    )


def message(r: Sequence[Any]) -> Message:
    """A row of ``MESSAGE_COLUMNS`` as a ``Message``."""
    return Message(
        id=r[0], from_agent=r[1], to_agent=r[2], kind=r[3], subject=r[4], body=r[5],
        priority=r[6], status=r[7], created_at=r[8],
        metadata=None if r[9] is None else msgspec.json.decode(r[9]),
        channel=r[10], delivery_to=r[11], expires_at=r[12], delivered_at=r[13],
        read_at=r[14], job_id=r[15], run_id=r[16], owner=r[17], reply_to=r[18],
        last_error=r[19], ack_at=r[20],
    )  # fmt: skip
