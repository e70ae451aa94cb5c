"""Write ops on approvals (README "Approvals", SEMANTICS D13).

A gated dispatch is held (``awaiting_approval``) with a ``pending`` approval and its
request delivery by the op that inserts it (``store.sqlite.approvals.gate``, called from
``InsertDispatches``, ``RecordSlots`` and the chain / spawn inserts); these ops resolve
it. Each is a conditional update, so two approvers (or an approver and the timer) can
never both win: the loser gets ``Resolved.conflict`` and the approval as it now is.

    pending ──approve──▶ approved   dispatch awaiting_approval → queued (new seq)
       │ ──reject───▶ rejected   dispatch → cancelled ("rejected ...")
       └──deadline──▶ on_timeout = approve: approved (by "timeout")
                      on_timeout = reject:  timed_out, dispatch → cancelled
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shepherd.store.models import Approval, Dispatch

__all__ = [
    "APPROVAL_OP_TYPES",
    "ApprovalOp",
    "ExpireApprovals",
    "RepairApprovals",
    "ResolveApproval",
    "Resolved",
]


class Resolved(msgspec.Struct, frozen=True, kw_only=True):
    """What resolving an approval did: the approval as it is now; the dispatch it
    queued (approved) or None; ``conflict`` when it was already resolved (by someone
    else: ``approval.status`` / ``resolved_by`` say how)."""

    approval: Approval
    dispatch: Dispatch | None = None
    conflict: bool = False


class ResolveApproval(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """An operator's decision. Returns ``Resolved``, or None if there is no such
    approval."""

    approval_id: int
    decision: Literal["approve", "reject"]
    now: float
    origin: str  # the approved dispatch's new origin (who must tell the dispatcher)
    by: str = "operator"
    reason: str | None = None


class ExpireApprovals(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """The pending approvals whose deadline is ``<= now``, each as its job's
    ``on_timeout`` says, the earliest first, at most ``limit``. Returns
    ``list[Resolved]``."""

    now: float
    origin: str
    limit: int = 1000


class RepairApprovals(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Start-up repair (D8) of what a foreign writer may leave: a dispatch still
    ``awaiting_approval`` whose approval was approved (→ queued) or rejected / timed out
    (→ cancelled). Returns the dispatches it queued."""

    now: float
    origin: str


ApprovalOp = ResolveApproval | ExpireApprovals | RepairApprovals
APPROVAL_OP_TYPES: tuple[type, ...] = (ResolveApproval, ExpireApprovals, RepairApprovals)
