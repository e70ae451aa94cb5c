"""SQL of approvals: resolving them (the ops of ``store.ops.approvals``), closing them
with their dispatch, and reading them. Holding new dispatches is
``store.sqlite.approval_gate`` (re-exported here: ``approvals.gate(conn, new, now)`` is
the one call every dispatch-inserting op makes).

Resolving is a conditional update (``WHERE status = 'pending'``), so one of two
concurrent approvers wins and the other gets ``Resolved.conflict``; an approved
dispatch is queued with a new seq (the dispatcher's loader reads by seq), a rejected
or timed-out one cancelled.
"""

from __future__ import annotations

import sqlite3
from typing import Any, assert_never

from shepherd.store.models import Approval, Dispatch
from shepherd.store.ops import (
    ApprovalOp,
    ExpireApprovals,
    RepairApprovals,
    ResolveApproval,
    Resolved,
)
from shepherd.store.shared.approvals import APPROVAL_COLUMNS as _COLUMNS
from shepherd.store.shared.approvals import approval_from_row as _from_row
from shepherd.store.shared.approvals import cancel_reason
from shepherd.store.sqlite.approval_gate import (
    BACKLOG,
    UNGATED_KINDS,
    NewRow,
    any_gated,
    approval_column,
    gate,
    mark_held,
    pending_count,
    request_text,
    set_gate,
)
from shepherd.store.sqlite.queries import DISPATCH_COLUMNS, dispatch_from_row

__all__ = [
    "BACKLOG",
    "UNGATED_KINDS",
    "NewRow",
    "any_gated",
    "apply_approval_op",
    "approval_column",
    "close_for_dispatch",
    "close_for_job",
    "gate",
    "get_approval",
    "list_approvals",
    "mark_held",
    "next_deadline",
    "pending_count",
    "request_text",
    "set_gate",
]

# -- resolving ------------------------------------------------------------------------


def apply_approval_op(conn: sqlite3.Connection, op: ApprovalOp) -> Any:
    match op:
        case ResolveApproval():
            return _resolve_op(conn, op)
        case ExpireApprovals():
            return _expire(conn, op)
        case RepairApprovals():
            return _repair(conn, op)
        case _:
            assert_never(op)


def _resolve_op(conn: sqlite3.Connection, op: ResolveApproval) -> Resolved | None:
    status = "approved" if op.decision == "approve" else "rejected"
    return _resolve(conn, op.approval_id, status, op.by, op.reason, op.now, op.origin)


def _resolve(
    conn: sqlite3.Connection,
    approval_id: int,
    status: str,
    by: str,
    reason: str | None,
    now: float,
    origin: str,
) -> Resolved | None:
    won = conn.execute(
        "UPDATE approvals SET status = ?, resolved_at = ?, resolved_by = ?, reason = ?"
        " WHERE id = ? AND status = 'pending'",
        (status, now, by, reason, approval_id),
    ).rowcount
    approval = _get(conn, approval_id)
    if approval is None:
        return None
    if not won:
        return Resolved(approval=approval, conflict=True)
    if status == "approved":
        return Resolved(approval=approval, dispatch=_queue(conn, approval.dispatch_id, now, origin))
    why = cancel_reason(status, by)
    _cancel(conn, approval.dispatch_id, f"{why}: {reason}" if reason else why, now)
    return Resolved(approval=approval)


def _queue(conn: sqlite3.Connection, dispatch_id: int, now: float, origin: str) -> Dispatch | None:
    seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM dispatches").fetchone()[0])
    cur = conn.execute(
        "UPDATE dispatches SET status = 'queued', seq = ?, origin = ?, updated_at = ?"
        " WHERE id = ? AND status = 'awaiting_approval'",
        (seq, origin, now, dispatch_id),
    )
    if cur.rowcount == 0:
        return None
    row = conn.execute(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches WHERE id = ?", (dispatch_id,)
    ).fetchone()
    return dispatch_from_row(row)


def _cancel(conn: sqlite3.Connection, dispatch_id: int, why: str, now: float) -> None:
    conn.execute(
        "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', last_error = ?,"
        " updated_at = ? WHERE id = ? AND status = 'awaiting_approval'",
        (why, now, dispatch_id),
    )


def _expire(conn: sqlite3.Connection, op: ExpireApprovals) -> list[Resolved]:
    due = conn.execute(
        "SELECT id, on_timeout FROM approvals INDEXED BY approvals_deadline"
        " WHERE status = 'pending' AND deadline <= ? ORDER BY deadline LIMIT ?",
        (op.now, op.limit),
    ).fetchall()
    out: list[Resolved] = []
    for approval_id, on_timeout in due:
        status = "approved" if on_timeout == "approve" else "timed_out"
        got = _resolve(conn, int(approval_id), status, "timeout", None, op.now, op.origin)
        if got is not None and not got.conflict:
            out.append(got)
    return out


def _repair(conn: sqlite3.Connection, op: RepairApprovals) -> list[Dispatch]:
    stuck = conn.execute(
        "SELECT a.dispatch_id, a.status, a.resolved_by FROM approvals a"
        " JOIN dispatches d ON d.id = a.dispatch_id"
        " WHERE d.status = 'awaiting_approval' AND a.status != 'pending'"
    ).fetchall()
    queued: list[Dispatch] = []
    for dispatch_id, status, by in stuck:
        if status == "approved":
            d = _queue(conn, int(dispatch_id), op.now, op.origin)
            if d is not None:
                queued.append(d)
        else:
            _cancel(conn, int(dispatch_id), cancel_reason(status, by), op.now)
    return queued


def close_for_dispatch(conn: sqlite3.Connection, dispatch_id: int, why: str, now: float) -> None:
    """The pending approval of a dispatch cancelled otherwise (cancel, job removed):
    rejected, ``resolved_by`` = ``why``."""
    conn.execute(
        "UPDATE approvals SET status = 'rejected', resolved_at = ?, resolved_by = ?"
        " WHERE dispatch_id = ? AND status = 'pending'",
        (now, why, dispatch_id),
    )


def close_for_job(conn: sqlite3.Connection, job_id: int, why: str, now: float) -> None:
    """The pending approvals of a removed job: rejected, ``resolved_by`` = ``why``."""
    conn.execute(
        "UPDATE approvals SET status = 'rejected', resolved_at = ?, resolved_by = ?"
        " WHERE job_id = ? AND status = 'pending'",
        (now, why, job_id),
    )


# -- reads ----------------------------------------------------------------------------


def _get(conn: sqlite3.Connection, approval_id: int) -> Approval | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)).fetchone()
    return None if row is None else _from_row(row)


def get_approval(conn: sqlite3.Connection, approval_id: int) -> Approval | None:
    return _get(conn, approval_id)


def list_approvals(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    job: str | None = None,
    limit: int = 100,
) -> list[Approval]:
    """Newest first."""
    clauses, args = [], []
    if status is not None:
        clauses.append("status = ?")
        args.append(status)
    if job is not None:
        clauses.append("job_name = ?")
        args.append(job)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM approvals {where} ORDER BY id DESC LIMIT ?", [*args, limit]
    ).fetchall()
    return [_from_row(r) for r in rows]


def next_deadline(conn: sqlite3.Connection) -> float | None:
    """The earliest deadline of a pending approval (one index probe)."""
    row = conn.execute("SELECT MIN(deadline) FROM approvals WHERE status = 'pending'").fetchone()
    return None if row is None or row[0] is None else float(row[0])
