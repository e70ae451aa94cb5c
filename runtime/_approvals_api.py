"""The approvals side of ``Runtime``: list, approve and reject approval requests.

``ApprovalsApi`` is a plain collaborator the ``Runtime`` façade holds. A decision is
one conditional op (``ResolveApproval``): of two approvers one wins, the other gets
``Conflict`` ("approval 7 is already approved by alice"). An approved dispatch is
queued with a new seq and sent to this runtime's dispatcher (``Enqueued``); a rejected
one is cancelled and its final ``OutcomeEvent`` published (waiters hear it; the
scheduler ends a fired one-shot job whose dispatch it was). The CLI, another process,
wakes the daemon instead (``send_wake 'd'``). Bad input is a
``ConfigError`` naming the argument; nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from shepherd.actors.approvals import cancelled_event
from shepherd.actors.messages import DispatcherMsg, Enqueued, Event, entry_from_dispatch
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.writer import StoreMsg, write
from shepherd.runtime._approval_policy import GATED_KINDS, validate_approval
from shepherd.store.errors import ConfigError, Conflict, NotFound
from shepherd.store.models import APPROVAL_STATES, Approval
from shepherd.store.ops import ResolveApproval, Resolved
from shepherd.store.protocol import Store

__all__ = [
    "GATED_KINDS",
    "MAX_REASON",
    "ApprovalsApi",
    "check_decision",
    "check_filter",
    "outcome",
    "validate_approval",
]

MAX_REASON = 1000  # characters of a rejection's reason
MAX_BY = 200  # characters of an approver's name


def check_filter(status: str | None) -> None:
    if status is not None and status not in APPROVAL_STATES:
        raise ConfigError(
            f"unknown approval status {status!r}; expected one of {', '.join(APPROVAL_STATES)}",
            field="status",
        )


def check_decision(
    approval_id: object, by: str | None, reason: str | None, *, reject: bool
) -> None:
    """ConfigError naming the argument: an id >= 1, ``by`` ≤ 200 characters, a reject's
    ``reason`` non-blank and ≤ 1000 characters."""
    if isinstance(approval_id, bool) or not isinstance(approval_id, int) or approval_id < 1:
        raise ConfigError(f"must be an approval id >= 1, got {approval_id!r}", field="id")
    if by is not None and (not isinstance(by, str) or not by.strip() or len(by) > MAX_BY):
        raise ConfigError(f"must be a name of 1-{MAX_BY} characters", field="by")
    if reject and (not isinstance(reason, str) or not reason.strip()):
        raise ConfigError("a rejection needs a reason", field="reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise ConfigError(f"must be at most {MAX_REASON} characters", field="reason")


def outcome(approval_id: int, got: Resolved | None) -> Resolved:
    """The result of a ``ResolveApproval``, or NotFound / Conflict raised."""
    if got is None:
        raise NotFound(f"no approval {approval_id}")
    if got.conflict:
        a = got.approval
        who = f" by {a.resolved_by}" if a.resolved_by else ""
        raise Conflict(f"approval {approval_id} is already {a.status.replace('_', ' ')}{who}")
    return got


class ApprovalsApi:
    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        instance: str,
        writer: Address[StoreMsg],
        dispatcher: Address[DispatcherMsg],
        emit: Callable[[Event], None] | None = None,
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._store = store
        self._instance = instance
        self._writer = writer
        self._dispatcher = dispatcher

    async def approvals(
        self, status: str | None = None, job: str | None = None, *, limit: int = 100
    ) -> list[Approval]:
        """Approval requests, newest first; ``status``: pending, approved, rejected,
        timed_out."""
        check_filter(status)
        return await self._store.approvals(status=status, job=job, limit=limit)

    async def approval(self, approval_id: int) -> Approval:
        found = await self._store.approval(approval_id)
        if found is None:
            raise NotFound(f"no approval {approval_id}")
        return found

    async def approve(self, approval_id: int, by: str | None = None) -> Approval:
        """Approve: its dispatch is queued (and runs as any other). ``Conflict`` if it
        was already resolved, ``NotFound`` if there is no such approval."""
        check_decision(approval_id, by, None, reject=False)
        return await self._resolve(approval_id, "approve", by, None)

    async def reject(self, approval_id: int, reason: str, by: str | None = None) -> Approval:
        """Reject: its dispatch is cancelled (``last_error``: "rejected by <by>: <reason>")
        and never runs."""
        check_decision(approval_id, by, reason, reject=True)
        return await self._resolve(approval_id, "reject", by, reason)

    async def _resolve(
        self, approval_id: int, decision: str, by: str | None, reason: str | None
    ) -> Approval:
        op = ResolveApproval(
            approval_id=approval_id,
            decision="approve" if decision == "approve" else "reject",
            now=self._clock.wall(),
            origin=self._instance,
            by=by or "api",
            reason=reason,
        )
        got = outcome(approval_id, await write(self._writer, op))
        if got.dispatch is not None:
            await self._dispatcher.send(Enqueued([entry_from_dispatch(got.dispatch)]))
        elif got.approval.status == "rejected" and self._emit is not None:
            # its dispatch was cancelled: waiters and the scheduler hear it ended
            self._emit(cancelled_event(got.approval, op.now))
        return got.approval
