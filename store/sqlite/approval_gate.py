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
from datetime import UTC, datetime
from typing import Any

import msgspec

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

BACKLOG = "approval-backlog"  # last_error of a dispatch cancelled by a full backlog
# never gated by default: an operator's run-now; never at all: a retry or a replay of a
# dispatch (they are the same dispatch again, approved before its first attempt)
DEFAULT_UNGATED = frozenset({"run_now", "retry", "replay"})
UNGATED_KINDS = frozenset({"retry", "replay"})
_DELIVERY_ATTEMPTS = 8  # the request delivery's attempt budget ([delivery] default)

# (dispatch id, job id, kind) of a row just inserted; or only its id (looked up)
NewRow = tuple[int, int, str] | int


def approval_column(spec: bytes) -> bytes | None:
    """``jobs.approval`` for a job stored as ``spec`` (JSON): None when not gated."""
    data = msgspec.json.decode(spec)
    policy = data.get("approval") if isinstance(data, dict) else None
    if not isinstance(policy, dict) or not policy.get("required", True):
        return None
    options = data.get("options") or {}
    return msgspec.json.encode(
        {
            "timeout": float(policy.get("timeout", 3600.0)),
            "on_timeout": policy.get("on_timeout", "reject"),
            "max_pending": int(policy.get("max_pending", 10)),
            "sources": policy.get("sources"),
            "to": options.get("delivery_to") or None,
            "channel": options.get("delivery_channel") or None,
        }
    )


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


def mark_held(out: list[Any], held: set[int]) -> list[Any]:
    """An insert op's ``(id, seq)`` results with ``seq = 0`` for the rows ``gate`` held
    or cancelled: "committed, but not for the dispatcher"."""
    if not held:
        return out
    return [(o[0], 0) if isinstance(o, tuple) and o[0] in held else o for o in out]


def _gates(policy: dict[str, Any], kind: str) -> bool:
    if kind in UNGATED_KINDS:
        return False
    sources = policy.get("sources")
    return kind not in DEFAULT_UNGATED if sources is None else kind in sources


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
        if policy is None or not _gates(policy, kind):
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
            _DELIVERY_ATTEMPTS,
            now,
            now,
            now,
        ),
    )
    conn.execute(
        "UPDATE approvals SET delivery_id = ? WHERE id = ?", (int(cur.lastrowid or 0), approval_id)
    )


def request_text(
    *,
    job: str,
    dispatch_id: int,
    approval_id: int,
    kind: str,
    payload: Any,
    deadline: float,
    on_timeout: str,
) -> str:
    """The body of an approval request: what waits, until when, and the two commands."""
    task = "" if payload is None else msgspec.json.encode(payload).decode()
    if len(task) > 200:
        task = task[:199] + "…"
    until = datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    then = "approved" if on_timeout == "approve" else "rejected"
    lines = [
        f"✋ Approval needed: job {job} (dispatch {dispatch_id}, {kind}), approval {approval_id}",
        *([f"Payload: {task}"] if task else []),
        f"Deadline: {until} (then {then} automatically)",
        f"Approve: shepherd approvals approve {approval_id}",
        f'Reject: shepherd approvals reject {approval_id} --reason "..."',
    ]
    return "\n".join(lines)


def pending_count(conn: sqlite3.Connection, job_id: int | None = None) -> int:
    if job_id is None:
        sql, args = "SELECT COUNT(*) FROM approvals WHERE status = 'pending'", ()
    else:
        sql = "SELECT COUNT(*) FROM approvals WHERE job_id = ? AND status = 'pending'"
        args = (job_id,)  # type: ignore[assignment]
    return int(conn.execute(sql, args).fetchone()[0])
