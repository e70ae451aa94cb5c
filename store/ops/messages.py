"""Write ops on inbox messages and announce deliveries (owned by the message router).

Messages: ``pending → delivered → read``, plus ``expired``. Deliveries: ``pending``
(due at ``next_attempt_at``) → ``sent`` or, after ``max_attempts``, ``failed``.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "MESSAGE_OP_TYPES",
    "Attempt",
    "ExpireMessages",
    "InsertDeliveries",
    "InsertMessages",
    "MarkMessages",
    "MessageOp",
    "NewDelivery",
    "NewMessage",
    "RecordAttempts",
    "RequeueDeliveries",
]


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    from_agent: str
    to_agent: str
    body: str
    kind: str = "text"
    subject: str | None = None
    priority: int = 0
    metadata: bytes | None = None  # JSON
    channel: str | None = None
    delivery_to: str | None = None
    expires_at: float | None = None
    job_id: int | None = None
    run_id: int | None = None
    owner: str | None = None
    reply_to: int | None = None
    ack_required: bool = False


class InsertMessages(msgspec.Struct, frozen=True, tag=True):
    """Returns the new message ids, in order."""

    rows: list[NewMessage]
    now: float


class MarkMessages(msgspec.Struct, frozen=True, tag=True):
    """``delivered`` (only from pending), ``read`` (from pending / delivered) or
    ``ack`` (any status: ack_at set, and read if pending / delivered). Returns how
    many rows changed."""

    ids: list[int]
    status: str
    now: float


class ExpireMessages(msgspec.Struct, frozen=True, tag=True):
    """Pending / delivered messages whose ``expires_at`` has passed → ``expired``.
    Returns how many."""

    now: float


class NewDelivery(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    body: str
    channel: str | None
    target: str | None
    max_attempts: int
    next_attempt_at: float
    job_id: int | None = None
    job_name: str | None = None
    run_id: int | None = None
    dispatch_id: int | None = None
    outcome: str | None = None


class DeadLetterAlert(msgspec.Struct, frozen=True, kw_only=True):
    """How the ops that dead-letter a dispatch (``FinishRuns``, ``SettleQueued``,
    ``RecoverOrphans``) queue its alert delivery, in the same transaction: to the job's
    ``options.dead_letter_alert`` (``{to, channel}``; ``false``: none), else to ``to`` /
    ``channel`` (``[delivery] dead_letter_to``); ``aliases`` resolves ``@name``
    (name → (channel, target)). No target at all: no alert (``store.alerts``)."""

    to: str | None = None
    channel: str | None = None
    aliases: dict[str, tuple[str | None, str | None]] = msgspec.field(default_factory=dict)
    max_attempts: int = 8


class InsertDeliveries(msgspec.Struct, frozen=True, tag=True):
    """Returns the new delivery ids, in order."""

    rows: list[NewDelivery]
    now: float


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    ok: bool
    sink: str | None = None
    error: str | None = None
    next_attempt_at: float | None = None  # None with ok=False: give up (failed)


class RecordAttempts(msgspec.Struct, frozen=True, tag=True):
    """One send attempt each: ``sent``, still ``pending`` (retry at next_attempt_at) or
    ``failed``. Only a ``pending`` delivery changes. Returns ``list[bool]``."""

    attempts: list[Attempt]
    now: float


class RequeueDeliveries(msgspec.Struct, frozen=True, tag=True):
    """Operator retry: failed → pending now, with a fresh attempt budget. Returns ids."""

    ids: list[int]
    now: float


MessageOp = (
    InsertMessages
    | MarkMessages
    | ExpireMessages
    | InsertDeliveries
    | RecordAttempts
    | RequeueDeliveries
)

MESSAGE_OP_TYPES: tuple[type, ...] = (
    InsertMessages,
    MarkMessages,
    ExpireMessages,
    InsertDeliveries,
    RecordAttempts,
    RequeueDeliveries,
)
