"""SQL of the ops that settle, recover or administer dispatches and runs without
claiming them (settle, crash recovery, cancel, dead-letter retry / purge), heartbeats
and the status snapshot, on PostgreSQL: the same results as ``store.sqlite.runs``.

Several nodes write at once, so every write here is either conditional on the row's
state (``WHERE status = 'queued'``, re-checked by PostgreSQL after a row-lock wait) or
preceded by a ``FOR UPDATE`` of what it read. New run ids come from the identity
column, new seqs from ``dispatch_seq``: never ``max + 1``.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from shepherd.store import keys
from shepherd.store.ops import (
    CancelDispatch,
    Heartbeats,
    PurgeDead,
    RecordProcess,
    RecoverOrphans,
    RetryDead,
    SaveStatus,
    SettleQueued,
)
from shepherd.store.postgres import alerts, approvals, ledger

__all__ = [
    "cancel_dispatch",
    "heartbeats",
    "orphaned_processes",
    "purge_dead",
    "record_process",
    "recover_orphans",
    "retry_dead",
    "save_status",
    "settle_queued",
]


def _count(status: str) -> int:
    """The row count of a command's status (``UPDATE 3`` → 3)."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


async def settle_queued(conn: asyncpg.Connection, op: SettleQueued) -> list[bool]:
    out: list[bool] = []
    now = float(op.now)
    for item in op.items:
        status = await conn.execute(
            "UPDATE dispatches SET status = $1, outcome = $2, dead_reason = $3, last_error = $4,"
            " updated_at = $5 WHERE id = $6 AND status = 'queued'",
            item.status,
            item.outcome,
            item.reason if item.status == "dead" else None,
            item.reason,
            now,
            int(item.dispatch_id),
        )
        ok = _count(status) == 1
        if ok and item.record_run:
            await conn.execute(
                "INSERT INTO runs (dispatch_id, job_id, job_name, attempt, status,"
                " started_at, finished_at, reason, error)"
                " SELECT id, job_id, job_name, attempt, $1, $2, $2, $3, $3 FROM dispatches"
                " WHERE id = $4",
                item.outcome,
                now,
                item.reason,
                int(item.dispatch_id),
            )
        if ok and item.status == "dead":
            await alerts.queue_alert(conn, item.dispatch_id, now, op.alert)
        out.append(ok)
    return out


async def recover_orphans(
    conn: asyncpg.Connection, op: RecoverOrphans
) -> list[tuple[int, int, str]]:
    """Every run left ``running`` → ``crashed``, its dispatch replayed once
    (at-least-once) or dead-lettered (at-most-once); ``recover_runs`` does the work for
    the runs a ``WHERE`` chooses."""
    if op.nodes is None:
        return await recover_runs(conn, op, "TRUE")
    return await recover_runs(conn, op, MINE_OR_ORPHANED, list(op.nodes))


# the runs of ``RecoverOrphans.nodes`` ($1), or of a node that is not alive (``nodes``)
MINE_OR_ORPHANED = (
    "r.instance = ANY($1::text[]) OR NOT EXISTS"
    " (SELECT 1 FROM nodes n WHERE n.name = r.instance AND n.status = 'alive')"
)


async def recover_runs(
    conn: asyncpg.Connection, op: RecoverOrphans, where: str, *args: Any
) -> list[tuple[int, int, str]]:
    """``RecoverOrphans`` for the running runs ``r`` that also match ``where`` (SQL on
    ``runs r``, its values ``$1 …`` from ``args``). The runs are
    locked first, so a node finishing one of them at the same moment either commits
    before (the run is no longer running: left alone) or waits for this transaction."""
    now = float(op.now)
    rows = await conn.fetch(
        "SELECT r.id, r.dispatch_id, j.spec, d.attempt,"
        " COALESCE(r.idempotency_key, d.idempotency_key) FROM runs r"
        " LEFT JOIN dispatches d ON d.id = r.dispatch_id"
        " LEFT JOIN jobs j ON j.id = r.job_id"
        f" WHERE r.status = 'running' AND ({where}) ORDER BY r.id FOR UPDATE OF r",
        *args,
    )
    out: list[tuple[int, int, str]] = []
    await ledger.release_runs(conn, [int(r[0]) for r in rows], now)
    for run_id, dispatch_id, spec, attempt, key in rows:
        await conn.execute(
            "UPDATE runs SET status = 'crashed', finished_at = $1, process = $2,"
            " error = 'the process running it died', reason = 'orphaned' WHERE id = $3",
            now,
            op.processes.get(int(run_id)),
            int(run_id),
        )
        guarantee = "at-most-once"
        if spec is not None:
            guarantee = msgspec.json.decode(spec).get("delivery_guarantee", guarantee)
        if dispatch_id is None:
            continue
        if guarantee == "at-least-once":
            await conn.execute(
                "UPDATE dispatches SET status = 'queued', seq = nextval('dispatch_seq'),"
                " origin = $1, not_before = $2,"
                " max_attempts = GREATEST(max_attempts, attempt + 1), outcome = 'crashed',"
                " last_error = 'replayed after a crash', current_run_id = NULL,"
                " agent = NULL, assigned_at = NULL,"
                " idempotency_key = $3, updated_at = $2 WHERE id = $4 AND status = 'running'",
                op.origin,
                now,
                keys.replay_key(key, dispatch_id, (attempt or 0) + 1),
                int(dispatch_id),
            )
            action = "replay"
        else:
            status = await conn.execute(
                "UPDATE dispatches SET status = 'dead', outcome = 'crashed',"
                " dead_reason = 'crashed', last_error = 'the process running it died',"
                " updated_at = $1 WHERE id = $2 AND status = 'running'",
                now,
                int(dispatch_id),
            )
            action = "dead"
            if _count(status) == 1:
                await alerts.queue_alert(conn, int(dispatch_id), now, op.alert)
        out.append((int(run_id), int(dispatch_id), action))
    # a dispatch marked running with no running run (cannot happen with one-transaction
    # claims, but a foreign writer or an old version could leave one): requeue it
    await conn.execute(
        "UPDATE dispatches d SET status = 'queued', current_run_id = NULL, updated_at = $1"
        " WHERE d.status = 'running' AND NOT EXISTS (SELECT 1 FROM runs r"
        " WHERE r.id = d.current_run_id AND r.status = 'running')"
        " AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.dispatch_id = d.id"
        " AND c.status = 'crashed' AND c.finished_at = $1)",
        now,
    )
    return out


async def record_process(conn: asyncpg.Connection, op: RecordProcess) -> bool:
    status = await conn.execute(
        "UPDATE runs SET pgid = $1, proc_start = $2, proc_clock = $3"
        " WHERE id = $4 AND status = 'running'",
        int(op.pgid),
        int(op.start),
        op.clock,
        int(op.run_id),
    )
    return _count(status) == 1


async def orphaned_processes(conn: asyncpg.Connection) -> list[tuple[int, int, int, str]]:
    """``(run_id, pgid, start, clock)`` of every running run that recorded a process
    group: read by crash recovery before ``RecoverOrphans`` (a read, on any connection)."""
    rows = await conn.fetch(
        "SELECT id, pgid, proc_start, proc_clock FROM runs"
        " WHERE status = 'running' AND pgid IS NOT NULL ORDER BY id"
    )
    return [(int(r[0]), int(r[1]), int(r[2] or 0), str(r[3] or "")) for r in rows]


async def cancel_dispatch(conn: asyncpg.Connection, op: CancelDispatch) -> str | None:
    """Queued (or held for approval) → cancelled; running → ``cancel_requested``. The
    row is locked while its status decides, so a concurrent claim waits or went first."""
    found = await conn.fetchval(
        "SELECT status FROM dispatches WHERE id = $1 FOR UPDATE", int(op.dispatch_id)
    )
    if found is None:
        return None
    status = str(found)
    now = float(op.now)
    if status in ("queued", "awaiting_approval"):
        await conn.execute(
            "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', updated_at = $1"
            " WHERE id = $2",
            now,
            int(op.dispatch_id),
        )
        if status == "awaiting_approval":  # its approval is closed with it
            await approvals.close_for_dispatch(conn, op.dispatch_id, "cancelled", now)
        return "cancelled"
    if status == "running":
        await conn.execute(
            "UPDATE dispatches SET cancel_requested = 1, updated_at = $1 WHERE id = $2",
            now,
            int(op.dispatch_id),
        )
    return status


async def retry_dead(conn: asyncpg.Connection, op: RetryDead) -> list[int]:
    """Dead → queued with fresh attempts and a new seq each, in the order of ``op.ids``."""
    done: list[int] = []
    now = float(op.now)
    for dispatch_id in op.ids:
        status = await conn.execute(
            "UPDATE dispatches SET status = 'queued', seq = nextval('dispatch_seq'),"
            " origin = $1, attempt = 0, not_before = $2, dead_reason = NULL,"
            " expires_at = NULL, current_run_id = NULL, cancel_requested = 0, updated_at = $2,"
            " agent = NULL, assigned_at = NULL"
            " WHERE id = $3 AND status = 'dead'",
            op.origin,
            now,
            int(dispatch_id),
        )
        if _count(status) == 1:
            done.append(dispatch_id)
    return done


async def purge_dead(conn: asyncpg.Connection, op: PurgeDead) -> int:
    """Delete dead letters and their runs; how many dispatches went. The dispatches go
    first (``RETURNING``), so a dead letter retried meanwhile keeps its runs."""
    args: list[Any]
    if op.ids is not None:
        where, args = "status = 'dead' AND id = ANY($1::bigint[])", [[int(i) for i in op.ids]]
    elif op.before is not None:
        where, args = "status = 'dead' AND updated_at < $1", [float(op.before)]
    else:
        where, args = "status = 'dead'", []
    rows = await conn.fetch(f"DELETE FROM dispatches WHERE {where} RETURNING id", *args)
    gone = [int(r[0]) for r in rows]
    if gone:
        await conn.execute("DELETE FROM runs WHERE dispatch_id = ANY($1::bigint[])", gone)
    return len(gone)


async def heartbeats(conn: asyncpg.Connection, op: Heartbeats) -> int:
    """Stamp ``heartbeat_at`` on the runs still running (the last stamp of a run given
    twice wins); how many were."""
    latest = {int(run_id): float(at) for run_id, at in op.items}
    if not latest:
        return 0
    status = await conn.execute(
        "UPDATE runs r SET heartbeat_at = v.at"
        " FROM unnest($1::bigint[], $2::float8[]) AS v(id, at)"
        " WHERE r.id = v.id AND r.status = 'running'",
        list(latest),
        list(latest.values()),
    )
    return _count(status)


async def save_status(conn: asyncpg.Connection, op: SaveStatus) -> None:
    await conn.execute(
        "INSERT INTO instances (instance, pid, started_at, updated_at, stopped_at, status)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance) DO UPDATE SET"
        " updated_at = EXCLUDED.updated_at, stopped_at = EXCLUDED.stopped_at,"
        " status = EXCLUDED.status",
        op.instance,
        int(op.pid),
        float(op.started_at),
        float(op.now),
        float(op.now) if op.stopped else None,
        op.status,
    )
