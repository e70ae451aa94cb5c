"""PostgreSQL SQL of the retention ops (``store.ops.retention``), as
``store.sqlite.prune``: which rows a cutoff selects, one bounded batch per op.

Never selected: a ``running`` run; a queued or running dispatch; the runs of a dead
letter (they go when it is purged); a resolved approval whose dispatch still waits;
and, as on SQLite, the newest row of each table. Each batch picks its rows through the
index of its rule (the partial indexes' own terms are written out, so a generic plan
can use them) with ``FOR UPDATE SKIP LOCKED``: two nodes' pruners take different
rows, and a row another writer holds is left for the next round. A dead letter and its
runs go in one statement, so a ``dlq retry`` on another node cannot fall between the
two deletes. An ended group's members go with it (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from typing import assert_never

import asyncpg

from shepherd.store.ops import (
    PruneApprovals,
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneGroups,
    PruneKeys,
    PruneMessages,
    PruneOp,
    PruneRunsBefore,
    PruneRunsPerJob,
)
from shepherd.store.postgres import ledger
from shepherd.store.postgres.messages import rowcount
from shepherd.store.shared.prune import RUN_MAY_GO, done

__all__ = ["apply_prune_op"]

_LOCKED = "FOR UPDATE SKIP LOCKED"


async def _runs_per_job(conn: asyncpg.Connection, op: PruneRunsPerJob) -> Pruned:
    deleted, job = 0, op.after_job
    for _ in range(op.max_jobs):
        found = await conn.fetchval(
            "SELECT job_id FROM runs WHERE job_id > $1 ORDER BY job_id LIMIT 1", job
        )
        if found is None:
            return Pruned(deleted, None)
        job = int(found)
        oldest_kept = await conn.fetchval(
            "SELECT id FROM runs WHERE job_id = $1 AND status != 'running'"
            " ORDER BY id DESC LIMIT 1 OFFSET $2",
            job,
            op.keep - 1,
        )
        if oldest_kept is None:
            continue
        room = op.limit - deleted
        n = rowcount(
            await conn.execute(
                "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE job_id = $1"
                f" AND id < $2 AND {RUN_MAY_GO} LIMIT $3 {_LOCKED})",
                job,
                oldest_kept,
                room,
            )
        )
        deleted += n
        if n >= room:  # the batch is full: this job may have more, look at it again
            return Pruned(deleted, job - 1)
    return Pruned(deleted, job)


async def _runs_before(conn: asyncpg.Connection, op: PruneRunsBefore) -> Pruned:
    n = rowcount(
        await conn.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE finished_at < $1"
            f" AND {RUN_MAY_GO} LIMIT $2 {_LOCKED})",
            float(op.before),
            op.limit,
        )
    )
    return done(n, op.limit)


async def _dispatches(conn: asyncpg.Connection, op: PruneDispatches) -> Pruned:
    chosen = (
        "SELECT id FROM dispatches WHERE status IN ('done', 'cancelled', 'dead')"
        " AND status = $1 AND updated_at < $2 AND (producer_key IS NULL OR updated_at < $3)"
        " AND id < (SELECT MAX(id) FROM dispatches) AND seq < (SELECT MAX(seq) FROM dispatches)"
        f" ORDER BY updated_at, id LIMIT $4 {_LOCKED}"
    )
    runs = (
        ", gone_runs AS (DELETE FROM runs WHERE dispatch_id IN (SELECT id FROM chosen) RETURNING 1)"
        if op.status == "dead"  # a dead letter keeps its runs until it goes
        else ", gone_runs AS (SELECT 1 WHERE false)"
    )
    row = await conn.fetchrow(
        f"WITH chosen AS ({chosen}){runs},"
        " gone AS (DELETE FROM dispatches WHERE id IN (SELECT id FROM chosen) RETURNING 1)"
        " SELECT (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM gone_runs)",
        op.status,
        float(op.before),
        float(op.keyed_before),
        op.limit,
    )
    assert row is not None
    n, run_count = int(row[0]), int(row[1])
    return Pruned(n, 0 if n >= op.limit else None, run_count)


async def _messages(conn: asyncpg.Connection, op: PruneMessages) -> Pruned:
    n = rowcount(
        await conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE status = $1"
            " AND created_at < $2 AND id < (SELECT MAX(id) FROM messages)"
            f" LIMIT $3 {_LOCKED})",
            op.status,
            float(op.before),
            op.limit,
        )
    )
    return done(n, op.limit)


async def _deliveries(conn: asyncpg.Connection, op: PruneDeliveries) -> Pruned:
    n = rowcount(
        await conn.execute(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status = $1"
            " AND updated_at < $2 AND id < (SELECT MAX(id) FROM deliveries)"
            f" LIMIT $3 {_LOCKED})",
            op.status,
            float(op.before),
            op.limit,
        )
    )
    return done(n, op.limit)


async def _approvals(conn: asyncpg.Connection, op: PruneApprovals) -> Pruned:
    # ``status != 'pending'`` is the partial index's own term (approvals_resolved)
    n = rowcount(
        await conn.execute(
            "DELETE FROM approvals WHERE id IN (SELECT id FROM approvals"
            " WHERE status != 'pending' AND status IN ('approved', 'rejected', 'timed_out')"
            " AND resolved_at < $1 AND id < (SELECT MAX(id) FROM approvals)"
            " AND NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.id = approvals.dispatch_id"
            f" AND d.status = 'awaiting_approval') LIMIT $2 {_LOCKED})",
            float(op.before),
            op.limit,
        )
    )
    return done(n, op.limit)


async def _groups(conn: asyncpg.Connection, op: PruneGroups) -> Pruned:
    # ``status != 'open'`` is the partial index's own term (task_groups_ended)
    n = rowcount(
        await conn.execute(
            "DELETE FROM task_groups WHERE id IN (SELECT id FROM task_groups"
            " WHERE status != 'open' AND status IN ('completed', 'failed')"
            " AND completed_at < $1 AND id < (SELECT MAX(id) FROM task_groups)"
            f" ORDER BY completed_at, id LIMIT $2 {_LOCKED})",
            float(op.before),
            op.limit,
        )
    )
    return done(n, op.limit)


async def apply_prune_op(conn: asyncpg.Connection, op: PruneOp) -> Pruned:
    match op:
        case PruneRunsPerJob():
            return await _runs_per_job(conn, op)
        case PruneRunsBefore():
            return await _runs_before(conn, op)
        case PruneDispatches():
            return await _dispatches(conn, op)
        case PruneMessages():
            return await _messages(conn, op)
        case PruneDeliveries():
            return await _deliveries(conn, op)
        case PruneKeys():
            return done(await ledger.prune(conn, op.now, op.limit), op.limit)
        case PruneApprovals():
            return await _approvals(conn, op)
        case PruneGroups():
            return await _groups(conn, op)
        case _:
            assert_never(op)
