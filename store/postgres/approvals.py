"""PostgreSQL SQL of approvals (mirrors ``store.sqlite.approvals``): resolving them (the
ops of ``store.ops.approvals``), closing them with their dispatch, and reading them.
Holding new dispatches is ``store.postgres.approval_gate`` (re-exported here:
``approvals.gate(conn, new, now)`` is the one call every dispatch-inserting op makes).

Resolving is a conditional update (``WHERE status = 'pending'``), which PostgreSQL
re-checks after waiting on the row's lock, so one of two approvers wins on any node
and the other gets ``Resolved.conflict``; an approved dispatch is queued with a new
seq (``nextval('dispatch_seq')``), a rejected or timed-out one cancelled. The timer's
sweep takes the due approvals ``FOR UPDATE SKIP LOCKED``: two nodes expiring at once
split the work instead of queueing behind each other.
"""

from __future__ import annotations

from typing import assert_never

import asyncpg

from shepherd.store.models import Approval, Dispatch
from shepherd.store.ops import (
    ApprovalOp,
    ExpireApprovals,
    RepairApprovals,
    ResolveApproval,
    Resolved,
)
from shepherd.store.postgres.approval_gate import (
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
from shepherd.store.shared.approvals import APPROVAL_COLUMNS, approval_from_row, cancel_reason
from shepherd.store.shared.queries import DISPATCH_COLUMNS, dispatch_from_row

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


async def apply_approval_op(
    conn: asyncpg.Connection, op: ApprovalOp
) -> Resolved | list[Resolved] | list[Dispatch] | None:
    match op:
        case ResolveApproval():
            return await _resolve_op(conn, op)
        case ExpireApprovals():
            return await _expire(conn, op)
        case RepairApprovals():
            return await _repair(conn, op)
        case _:
            assert_never(op)


async def _resolve_op(conn: asyncpg.Connection, op: ResolveApproval) -> Resolved | None:
    status = "approved" if op.decision == "approve" else "rejected"
    return await _resolve(conn, op.approval_id, status, op.by, op.reason, op.now, op.origin)


async def _resolve(
    conn: asyncpg.Connection,
    approval_id: int,
    status: str,
    by: str,
    reason: str | None,
    now: float,
    origin: str,
) -> Resolved | None:
    done = await conn.execute(
        "UPDATE approvals SET status = $1, resolved_at = $2, resolved_by = $3, reason = $4"
        " WHERE id = $5 AND status = 'pending'",
        status,
        float(now),
        by,
        reason,
        approval_id,
    )
    approval = await get_approval(conn, approval_id)
    if approval is None:
        return None
    if done == "UPDATE 0":
        return Resolved(approval=approval, conflict=True)
    if status == "approved":
        queued = await _queue(conn, approval.dispatch_id, now, origin)
        return Resolved(approval=approval, dispatch=queued)
    why = cancel_reason(status, by)
    await _cancel(conn, approval.dispatch_id, f"{why}: {reason}" if reason else why, now)
    return Resolved(approval=approval)


async def _queue(
    conn: asyncpg.Connection, dispatch_id: int, now: float, origin: str
) -> Dispatch | None:
    row = await conn.fetchrow(
        "UPDATE dispatches SET status = 'queued', seq = nextval('dispatch_seq'), origin = $1,"
        f" updated_at = $2 WHERE id = $3 AND status = 'awaiting_approval'"
        f" RETURNING {DISPATCH_COLUMNS}",
        origin,
        float(now),
        dispatch_id,
    )
    return None if row is None else dispatch_from_row(row)


async def _cancel(conn: asyncpg.Connection, dispatch_id: int, why: str, now: float) -> None:
    await conn.execute(
        "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', last_error = $1,"
        " updated_at = $2 WHERE id = $3 AND status = 'awaiting_approval'",
        why,
        float(now),
        dispatch_id,
    )


async def _expire(conn: asyncpg.Connection, op: ExpireApprovals) -> list[Resolved]:
    due = await conn.fetch(
        "SELECT id, on_timeout FROM approvals WHERE status = 'pending' AND deadline <= $1"
        " ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED",
        float(op.now),
        op.limit,
    )
    out: list[Resolved] = []
    for approval_id, on_timeout in due:
        status = "approved" if on_timeout == "approve" else "timed_out"
        got = await _resolve(conn, int(approval_id), status, "timeout", None, op.now, op.origin)
        if got is not None and not got.conflict:
            out.append(got)
    return out


async def _repair(conn: asyncpg.Connection, op: RepairApprovals) -> list[Dispatch]:
    stuck = await conn.fetch(
        "SELECT a.dispatch_id, a.status, a.resolved_by FROM approvals a"
        " JOIN dispatches d ON d.id = a.dispatch_id"
        " WHERE d.status = 'awaiting_approval' AND a.status != 'pending'"
        " ORDER BY a.id"
    )
    queued: list[Dispatch] = []
    for dispatch_id, status, by in stuck:
        if status == "approved":
            d = await _queue(conn, int(dispatch_id), op.now, op.origin)
            if d is not None:
                queued.append(d)
        else:
            await _cancel(conn, int(dispatch_id), cancel_reason(status, by), op.now)
    return queued


async def close_for_dispatch(
    conn: asyncpg.Connection, dispatch_id: int, why: str, now: float
) -> None:
    """The pending approval of a dispatch cancelled otherwise (cancel, job removed):
    rejected, ``resolved_by`` = ``why``."""
    await conn.execute(
        "UPDATE approvals SET status = 'rejected', resolved_at = $1, resolved_by = $2"
        " WHERE dispatch_id = $3 AND status = 'pending'",
        float(now),
        why,
        dispatch_id,
    )


async def close_for_job(conn: asyncpg.Connection, job_id: int, why: str, now: float) -> None:
    """The pending approvals of a removed job: rejected, ``resolved_by`` = ``why``."""
    await conn.execute(
        "UPDATE approvals SET status = 'rejected', resolved_at = $1, resolved_by = $2"
        " WHERE job_id = $3 AND status = 'pending'",
        float(now),
        why,
        job_id,
    )


# -- reads ----------------------------------------------------------------------------


async def get_approval(conn: asyncpg.Connection, approval_id: int) -> Approval | None:
    row = await conn.fetchrow(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1", approval_id
    )
    return None if row is None else approval_from_row(row)


async def list_approvals(
    conn: asyncpg.Connection,
    *,
    status: str | None = None,
    job: str | None = None,
    limit: int = 100,
) -> list[Approval]:
    """Newest first."""
    clauses: list[str] = []
    args: list[object] = []
    if status is not None:
        args.append(status)
        clauses.append(f"status = ${len(args)}")
    if job is not None:
        args.append(job)
        clauses.append(f"job_name = ${len(args)}")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    args.append(limit)
    rows = await conn.fetch(
        f"SELECT {APPROVAL_COLUMNS} FROM approvals {where} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    return [approval_from_row(r) for r in rows]


async def next_deadline(conn: asyncpg.Connection) -> float | None:
    """The earliest deadline of a pending approval (one probe of ``approvals_deadline``)."""
    at = await conn.fetchval("SELECT MIN(deadline) FROM approvals WHERE status = 'pending'")
    return None if at is None else float(at)
