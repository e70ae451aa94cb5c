"""The write op of a spawn message: an inbox message of kind ``spawn`` whose body is a
job spec becomes a one-shot job and its ``spawn`` dispatch, and the message is marked
``delivered``, in one transaction; a spec that failed validation marks the message
``failed`` with the error, never silently delivered (SEMANTICS §2.6).

The job is stored as a one-shot that has fired (``at`` = the spawn's time, no next
run), so the scheduler ends it after its dispatch's run exactly as an at-job that
fired (removed with ``delete_after_run``, else disabled), also across a restart.
"""

from __future__ import annotations

import msgspec

from shepherd.store.ops.messages import NewMessage

__all__ = ["SPAWN_OP_TYPES", "SpawnMessage", "SpawnOp", "Spawned"]


class SpawnMessage(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Insert ``message`` (or take the stored pending message ``message_id``) and:

    - ``error`` set: mark it ``failed`` with ``last_error = error``;
    - else insert the job ``spec`` (JSON of a validated ``JobSpec``; its name gets the
      message id where it contains ``{id}``), a ``spawn`` dispatch of it (``priority``
      rank, ``max_attempts``, ``expires_at``), and mark the message ``delivered``.

    A job name that is taken fails the message (``last_error`` says so). A stored
    message that is no longer pending is left alone (``Spawned.status`` None).
    """

    now: float
    origin: str
    message: NewMessage | None = None
    message_id: int | None = None
    error: str | None = None
    spec: bytes | None = None
    executor: str = ""
    priority: int = 2
    max_attempts: int = 1
    expires_at: float | None = None


class Spawned(msgspec.Struct, frozen=True, kw_only=True):
    message_id: int
    status: str | None  # delivered | failed | None (not pending any more: untouched)
    error: str | None = None
    job_id: int | None = None
    job_name: str | None = None
    dispatch_id: int | None = None
    seq: int | None = None
    gated: bool = False  # held (or cancelled) by its job's approval gate: not for the dispatcher


SpawnOp = SpawnMessage
SPAWN_OP_TYPES: tuple[type, ...] = (SpawnMessage,)
