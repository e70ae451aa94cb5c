"""PostgreSQL SQL of ``SpawnMessage`` (store/ops/spawn.py), as ``store.sqlite.spawn``:
a spawn message, its one-shot job and ``spawn`` dispatch in one transaction, and the
reads of pending and failed spawn messages; the naming and metadata rules are
``store.shared.spawn``'.

Two nodes may adopt the same stored pending message: it is read ``FOR UPDATE``, so the
second waits for the first to commit and then finds it no longer pending. Two spawns of
the same job name take a transaction-level advisory lock on the name before the check
that the name is free, so the second sees the first's job and fails.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from shepherd.store.ops import InsertMessages, SaveJob
from shepherd.store.ops.spawn import Spawned, SpawnMessage
from shepherd.store.postgres import approvals
from shepherd.store.postgres.dispatches import INSERT_DISPATCH, dispatch_values, take_ids
from shepherd.store.postgres.jobs import save_job
from shepherd.store.postgres.messages import insert_messages
from shepherd.store.shared.spawn import (
    failed_row,
    name_taken,
    spawn_dispatch,
    spawned_metadata,
    spawned_spec,
)

__all__ = ["failed_spawns", "pending_spawns", "spawn_message"]

_NAME_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('shepherd:' || current_schema()"
    " || ':job-name:' || $1, 0))"
)


async def spawn_message(conn: asyncpg.Connection, op: SpawnMessage) -> Spawned:
    if op.message is not None:
        msg_id = (await insert_messages(conn, InsertMessages([op.message], op.now)))[0]
        metadata: bytes | None = op.message.metadata
    else:
        assert op.message_id is not None
        msg_id = op.message_id
        row = await conn.fetchrow(
            "SELECT status, metadata FROM messages WHERE id = $1 AND kind = 'spawn' FOR UPDATE",
            msg_id,
        )
        if row is None or row[0] != "pending":
            return Spawned(message_id=msg_id, status=None)
        metadata = row[1]
    error = op.error
    name = ""
    spec: dict[str, Any] = {}
    if error is None:
        assert op.spec is not None
        name, spec = spawned_spec(op.spec, msg_id)
        await conn.execute(_NAME_LOCK, name)
        if await conn.fetchval("SELECT 1 FROM jobs WHERE name = $1", name) is not None:
            error = name_taken(name)
    if error is not None:
        await conn.execute(
            "UPDATE messages SET status = 'failed', last_error = $1,"
            " delivery_attempts = delivery_attempts + 1 WHERE id = $2",
            error,
            msg_id,
        )
        return Spawned(message_id=msg_id, status="failed", error=error)
    # a one-shot that has fired: no next run (save_job also writes its approval gate)
    save = SaveJob(name=name, executor=op.executor, enabled=True,
                   spec=msgspec.json.encode(spec), next_run_at=None, now=op.now)  # fmt: skip
    job_id = int(await save_job(conn, save))
    [(dispatch_id, seq)] = await take_ids(conn, 1)
    new = spawn_dispatch(op, job_id, name)
    await conn.execute(INSERT_DISPATCH, *dispatch_values(new, dispatch_id, seq, op.origin, op.now))
    await conn.execute(
        "UPDATE messages SET status = 'delivered', delivered_at = $1, metadata = $2,"
        " delivery_attempts = delivery_attempts + 1 WHERE id = $3",
        float(op.now),
        spawned_metadata(metadata, name, job_id, dispatch_id),
        msg_id,
    )
    held = await approvals.gate(conn, [(dispatch_id, job_id, "spawn")], op.now)
    return Spawned(
        message_id=msg_id,
        status="delivered",
        job_id=job_id,
        job_name=name,
        dispatch_id=dispatch_id,
        seq=seq,
        gated=dispatch_id in held,
    )


async def pending_spawns(
    conn: asyncpg.Connection, *, limit: int = 1000
) -> list[tuple[int, str, str]]:
    """(id, from_agent, body) of spawn messages still pending (a foreign writer's)."""
    rows = await conn.fetch(
        "SELECT id, from_agent, body FROM messages WHERE kind = 'spawn' AND status = 'pending'"
        " ORDER BY id LIMIT $1",
        limit,
    )
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


async def failed_spawns(
    conn: asyncpg.Connection, *, limit: int = 5
) -> tuple[int, list[dict[str, Any]]]:
    """How many spawn messages failed, and the latest ``limit`` of them."""
    count = await conn.fetchval(
        "SELECT COUNT(*) FROM messages WHERE kind = 'spawn' AND status = 'failed'"
    )
    rows = await conn.fetch(
        "SELECT id, from_agent, created_at, last_error FROM messages"
        " WHERE kind = 'spawn' AND status = 'failed' ORDER BY id DESC LIMIT $1",
        limit,
    )
    return int(count), [failed_row(r) for r in rows]
