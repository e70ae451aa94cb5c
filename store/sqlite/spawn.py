"""SQL of ``SpawnMessage``: a spawn message, its one-shot job and ``spawn`` dispatch in
one transaction (store/ops/spawn.py), and the reads of failed spawn messages."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from shepherd.store.ops import InsertMessages, SaveJob
from shepherd.store.ops.spawn import Spawned, SpawnMessage
from shepherd.store.shared.spawn import (
    failed_row,
    name_taken,
    spawn_dispatch,
    spawned_metadata,
    spawned_spec,
)
from shepherd.store.sqlite import approvals
from shepherd.store.sqlite.dispatches import INSERT_DISPATCH, dispatch_values, next_id
from shepherd.store.sqlite.jobs import save_job
from shepherd.store.sqlite.messages import insert_messages

__all__ = ["failed_spawns", "pending_spawns", "spawn_message"]


def spawn_message(conn: sqlite3.Connection, op: SpawnMessage) -> Spawned:
    if op.message is not None:
        msg_id = insert_messages(conn, InsertMessages([op.message], op.now))[0]
        metadata: bytes | None = op.message.metadata
    else:
        assert op.message_id is not None
        msg_id = op.message_id
        row = conn.execute(
            "SELECT status, metadata FROM messages WHERE id = ? AND kind = 'spawn'", (msg_id,)
        ).fetchone()
        if row is None or row[0] != "pending":
            return Spawned(message_id=msg_id, status=None)
        metadata = row[1]
    error = op.error
    name = None
    if error is None:
        assert op.spec is not None
        name, spec = spawned_spec(op.spec, msg_id)
        if conn.execute("SELECT 1 FROM jobs WHERE name = ?", (name,)).fetchone() is not None:
            error = name_taken(name)
    if error is not None:
        conn.execute(
            "UPDATE messages SET status = 'failed', last_error = ?,"
            " delivery_attempts = delivery_attempts + 1 WHERE id = ?",
            (error, msg_id),
        )
        return Spawned(message_id=msg_id, status="failed", error=error)
    # a one-shot that has fired: no next run (save_job also writes its approval gate)
    save = SaveJob(name=str(name), executor=op.executor, enabled=True,
                   spec=msgspec.json.encode(spec), next_run_at=None, now=op.now)  # fmt: skip
    job_id = save_job(conn, save)
    dispatch_id = next_id(conn, "dispatches")
    seq = next_id(conn, "dispatches", "seq")
    new = spawn_dispatch(op, job_id, str(name))
    conn.execute(INSERT_DISPATCH, dispatch_values(new, dispatch_id, seq, op.origin, op.now))
    conn.execute(
        "UPDATE messages SET status = 'delivered', delivered_at = ?, metadata = ?,"
        " delivery_attempts = delivery_attempts + 1 WHERE id = ?",
        (op.now, spawned_metadata(metadata, str(name), job_id, dispatch_id), msg_id),
    )
    held = approvals.gate(conn, [(dispatch_id, job_id, "spawn")], op.now)
    return Spawned(
        message_id=msg_id,
        status="delivered",
        job_id=job_id,
        job_name=name,
        dispatch_id=dispatch_id,
        seq=seq,
        gated=dispatch_id in held,
    )


def pending_spawns(conn: sqlite3.Connection, *, limit: int = 1000) -> list[tuple[int, str, str]]:
    """(id, from_agent, body) of spawn messages still pending (a foreign writer's)."""
    rows = conn.execute(
        "SELECT id, from_agent, body FROM messages WHERE kind = 'spawn' AND status = 'pending'"
        " ORDER BY id LIMIT ?",
        (limit,),
    )
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def failed_spawns(conn: sqlite3.Connection, *, limit: int = 5) -> tuple[int, list[dict[str, Any]]]:
    """How many spawn messages failed, and the latest ``limit`` of them."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM messages WHERE kind = 'spawn' AND status = 'failed'"
    ).fetchone()
    rows = conn.execute(
        "SELECT id, from_agent, created_at, last_error FROM messages"
        " WHERE kind = 'spawn' AND status = 'failed' ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    latest = [failed_row(r) for r in rows]
    return int(count), latest
