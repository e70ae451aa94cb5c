"""PostgreSQL SQL of approval gates at insertion (mirrors ``store.sqlite.approval_gate``;
the rules are ``store.shared.approvals``).

- ``set_gate``: writes ``jobs.approval`` of a job just saved (``save_job``).
- ``any_gated``: one probe of the partial index ``jobs_gated``.
- ``gate(conn, new, now)``: called by every op that inserts dispatches, inside its
  transaction, with the rows it inserted: a row of a gated job whose kind the gate
  holds becomes ``awaiting_approval`` with a ``pending`` approval and its request
  delivery; past the job's ``max_pending`` it is cancelled (``approval-backlog``).
  Returns the ids it held or cancelled (``mark_held``: their insert result is
  ``(id, 0)``).

Unlike SQLite, two nodes' writers may gate dispatches of one job at once: the gated
jobs' rows are locked (``FOR UPDATE``, in id order) before their pending approvals
are counted, so ``max_pending`` holds across nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
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


async def set_gate(conn: asyncpg.Connection, job_id: int, spec: bytes) -> int:
    """Write ``jobs.approval`` of a job just saved as ``spec``; ``job_id``."""
    await conn.execute(
        "UPDATE jobs SET approval = $1 WHERE id = $2", approval_column(spec), int(job_id)
    )
    return job_id


async def any_gated(conn: asyncpg.Connection) -> bool:
    """Whether any job has a gate (one probe of the partial index ``jobs_gated``)."""
    row = await conn.fetchval("SELECT 1 FROM jobs WHERE approval IS NOT NULL LIMIT 1")
    return row is not None


async def gate(conn: asyncpg.Connection, new: Sequence[NewRow], now: float) -> set[int]:
    """Hold (or cancel, past the backlog) the rows among ``new`` that their job's
    approval gates; their ids. Costs one indexed probe when no job is gated."""
    if not new:
        return set()
    gated = {
        int(r[0]): msgspec.json.decode(r[1])
        for r in await conn.fetch("SELECT id, approval FROM jobs WHERE approval IS NOT NULL")
    }
    if not gated:
        return set()
    rows = await _resolve_rows(conn, new)
    holding = [(d, j, k) for d, j, k in rows if (p := gated.get(j)) is not None and gates(p, k)]
    if not holding:
        return set()
    # the counts below stay true until this transaction ends, on every node
    await conn.execute(
        "SELECT 1 FROM jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
        sorted({j for _, j, _ in holding}),
    )
    held: set[int] = set()
    pending: dict[int, int] = {}
    for dispatch_id, job_id, _kind in holding:
        policy = gated[job_id]
        if job_id not in pending:
            pending[job_id] = await pending_count(conn, job_id)
        held.add(dispatch_id)
        if pending[job_id] >= int(policy["max_pending"]):
            await conn.execute(
                "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
                " last_error = $1, updated_at = $2 WHERE id = $3",
                BACKLOG,
                float(now),
                dispatch_id,
            )
            continue
        pending[job_id] += 1
        await _hold(conn, dispatch_id, policy, now)
    return held


async def _resolve_rows(
    conn: asyncpg.Connection, new: Sequence[NewRow]
) -> list[tuple[int, int, str]]:
    out = [(int(r[0]), int(r[1]), str(r[2])) for r in new if isinstance(r, tuple)]
    ids = [int(r) for r in new if isinstance(r, int)]
    if ids:
        out += [
            (int(r[0]), int(r[1]), str(r[2]))
            for r in await conn.fetch(
                "SELECT id, job_id, kind FROM dispatches WHERE id = ANY($1::bigint[])", ids
            )
        ]
    return out


async def _hold(
    conn: asyncpg.Connection, dispatch_id: int, policy: dict[str, Any], now: float
) -> None:
    job_id, job, kind, payload = await conn.fetchrow(
        "UPDATE dispatches SET status = 'awaiting_approval', updated_at = $1 WHERE id = $2"
        " RETURNING job_id, job_name, kind, payload",
        float(now),
        dispatch_id,
    )
    deadline = float(now) + float(policy["timeout"])
    on_timeout = str(policy["on_timeout"])
    approval_id = int(
        await conn.fetchval(
            "INSERT INTO approvals (dispatch_id, job_id, job_name, kind, status, on_timeout,"
            " requested_at, deadline) VALUES ($1,$2,$3,$4,'pending',$5,$6,$7) RETURNING id",
            dispatch_id,
            job_id,
            job,
            kind,
            on_timeout,
            float(now),
            deadline,
        )
    )
    body = request_text(
        job=job,
        dispatch_id=dispatch_id,
        approval_id=approval_id,
        kind=kind,
        payload=msgspec.json.decode(payload) if payload else None,
        deadline=deadline,
        on_timeout=on_timeout,
    )
    delivery_id = await conn.fetchval(
        "INSERT INTO deliveries (kind, status, channel, target, body, job_id, job_name,"
        " dispatch_id, attempts, max_attempts, next_attempt_at, created_at, updated_at)"
        " VALUES ('approval','pending',$1,$2,$3,$4,$5,$6,0,$7,$8,$8,$8) RETURNING id",
        policy.get("channel"),
        policy.get("to"),
        body,
        job_id,
        job,
        dispatch_id,
        DELIVERY_ATTEMPTS,
        float(now),
    )
    await conn.execute(
        "UPDATE approvals SET delivery_id = $1 WHERE id = $2", int(delivery_id), approval_id
    )


async def pending_count(conn: asyncpg.Connection, job_id: int | None = None) -> int:
    if job_id is None:
        n = await conn.fetchval("SELECT COUNT(*) FROM approvals WHERE status = 'pending'")
    else:
        n = await conn.fetchval(
            "SELECT COUNT(*) FROM approvals WHERE job_id = $1 AND status = 'pending'", job_id
        )
    return int(n)
