"""SQL of approval gates at insertion (README "Approvals"): which jobs are gated, and
holding the new dispatches of a gated job in the inserting transaction.

- ``approval_column``: what ``jobs.approval`` holds for a job (``save_job`` writes it
  from the spec, ``set_gate``): the gate as the insert path needs it, NULL for an
  ungated job. The partial index ``jobs_gated`` makes "is any job gated?" one probe
  per batch (``any_gated``).
- ``gate(conn, new, now)``: called by every op that inserts dispatches, inside its
  transaction, with the rows it inserted. A row of a gated job whose kind the gate's
  ``sources`` name is held: ``awaiting_approval``, a ``pending`` approval, and the
  request delivery (kind ``approval``) to the job's ``delivery_to`` / ``delivery_channel``
  (its alias is resolved by the router when it sends). When the job already has
  ``max_pending`` pending approvals, the row is cancelled instead, ``last_error =
  'approval-backlog'``. Returns the ids it held or cancelled: those must not go to the
  dispatcher (``mark_held``: their insert result is ``(id, 0)``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from shepherd.store.shared.approvals import (
    BACKLOG,
    DELIVERY_ATTEMPTS,
    UNGATED_KINDS,
    NewRow,
    approval_column,
    gates,
    mark_held,
    request_text,
)

__all__ = [
    "BACKLOG",
    "UNGATED_KINDS",
    "NewRow",
    "any_gated",
    "approval_column",
    "gate",
    "mark_held",
    "pending_count",
    "request_text",
    "set_gate",
]


def set_gate(conn: sqlite3.Connection, job_id: int, spec: bytes) -> int:
    """Write ``jobs.approval`` of a job just saved as ``spec``; ``job_id``."""
    conn.execute("UPDATE jobs SET approval = ? WHERE id = ?", (approval_column(spec), job_id))
    return job_id


def any_gated(conn: sqlite3.Connection) -> bool:
    """Whether any job has a gate (one probe of the partial index ``jobs_gated``)."""
    row = conn.execute(
        "SELECT 1 FROM jobs INDEXED BY jobs_gated WHERE approval IS NOT NULL LIMIT 1"
    ).fetchone()
    return row is not None


def gate(conn: sqlite3.Connection, new: Sequence[NewRow], now: float) -> set[int]:
    """Hold (or cancel, past the backlog) the rows among ``new`` that their job's
    approval gates; their ids. Costs one indexed probe when no job is gated."""
    if not new:
        return set()
    gated = {
        int(job_id): msgspec.json.decode(blob)
        for job_id, blob in conn.execute(
            "SELECT id, approval FROM jobs INDEXED BY jobs_gated WHERE approval IS NOT NULL"
        )
    }
    if not gated:
        return set()
    rows = _resolve_rows(conn, new)
    held: set[int] = set()
    pending: dict[int, int] = {}
    for dispatch_id, job_id, kind in rows:
        policy = gated.get(job_id)
        if policy is None or not gates(policy, kind):
            continue
        if job_id not in pending:
            pending[job_id] = pending_count(conn, job_id)
        held.add(dispatch_id)
        if pending[job_id] >= int(policy["max_pending"]):
            conn.execute(
                "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
                " last_error = ?, updated_at = ? WHERE id = ?",
                (BACKLOG, now, dispatch_id),
            )
            continue
        pending[job_id] += 1
        _hold(conn, dispatch_id, policy, now)
    return held


def _resolve_rows(conn: sqlite3.Connection, new: Sequence[NewRow]) -> list[tuple[int, int, str]]:
    out = [r for r in new if isinstance(r, tuple)]
    ids = [r for r in new if isinstance(r, int)]
    for k in range(0, len(ids), 500):
        part = ids[k : k + 500]
        marks = ",".join("?" * len(part))
        out += [
            (int(i), int(j), str(kind))
            for i, j, kind in conn.execute(
                f"SELECT id, job_id, kind FROM dispatches WHERE id IN ({marks})", part
            )
        ]
    return out


def _hold(conn: sqlite3.Connection, dispatch_id: int, policy: dict[str, Any], now: float) -> None:
    conn.execute(
        "UPDATE dispatches SET status = 'awaiting_approval', updated_at = ? WHERE id = ?",
        (now, dispatch_id),
    )
    job_id, job, kind, payload = conn.execute(
        "SELECT job_id, job_name, kind, payload FROM dispatches WHERE id = ?", (dispatch_id,)
    ).fetchone()
    deadline = now + float(policy["timeout"])
    cur = conn.execute(
        "INSERT INTO approvals (dispatch_id, job_id, job_name, kind, status, on_timeout,"
        " requested_at, deadline) VALUES (?,?,?,?,'pending',?,?,?)",
        (dispatch_id, job_id, job, kind, policy["on_timeout"], now, deadline),
    )
    approval_id = int(cur.lastrowid or 0)
    body = request_text(
        job=job,
        dispatch_id=dispatch_id,
        approval_id=approval_id,
        kind=kind,
        payload=msgspec.json.decode(payload) if payload else None,
        deadline=deadline,
        on_timeout=str(policy["on_timeout"]),
    )
    cur = conn.execute(
        "INSERT INTO deliveries (kind, status, channel, target, body, job_id, job_name,"
        " dispatch_id, attempts, max_attempts, next_attempt_at, created_at, updated_at)"
        " VALUES ('approval','pending',?,?,?,?,?,?,0,?,?,?,?)",
        (
            policy.get("channel"),
            policy.get("to"),
            body,
            job_id,
            job,
            dispatch_id,
            DELIVERY_ATTEMPTS,
            now,
            now,
            now,
        ),
    )
    conn.execute(
        "UPDATE approvals SET delivery_id = ? WHERE id = ?", (int(cur.lastrowid or 0), approval_id)
    )


def pending_count(conn: sqlite3.Connection, job_id: int | None = None) -> int:
    if job_id is None:
        sql, args = "SELECT COUNT(*) FROM approvals WHERE status = 'pending'", ()
    else:
        sql = "SELECT COUNT(*) FROM approvals WHERE job_id = ? AND status = 'pending'"
        args = (job_id,)  # type: ignore[assignment]
    return int(conn.execute(sql, args).fetchone()[0])
