"""SQL of the retention ops (``store.ops.retention``): which rows a cutoff selects, one
bounded batch per op.

Never selected: a ``running`` run; a queued or running dispatch; the runs of a dead
letter (they go when it is purged); and the newest row of each table (the highest
``id``, and for dispatches the highest ``seq``). Ids and sequence numbers are
``MAX() + 1``, and the dispatcher reads new dispatches by ``seq`` above a mark, so
deleting the newest row would hand its id or seq to the next insert.

Indexes (a migration in ``store.sqlite.schema``): ``runs_finished``, ``dispatches_ended``,
``messages_ended``, ``messages_reply`` (the ``reply_to`` foreign key's ON DELETE
lookup), ``deliveries_ended``; ``runs_job`` and ``idempotency_expiry`` already exist;
``approvals_resolved`` (slot 7) and ``task_groups_ended`` (slot 8). A resolved approval
whose dispatch still waits (``awaiting_approval``) stays: the start repair reads its
decision. An ended group goes with its members (the members' primary key leads with
``group_id``).
"""

from __future__ import annotations

import sqlite3
from typing import assert_never

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
from shepherd.store.shared.prune import RUN_MAY_GO as _RUN_MAY_GO
from shepherd.store.shared.prune import done as _done
from shepherd.store.sqlite import ledger


def _runs_per_job(conn: sqlite3.Connection, op: PruneRunsPerJob) -> Pruned:
    deleted, job = 0, op.after_job
    for _ in range(op.max_jobs):
        row = conn.execute(
            "SELECT job_id FROM runs WHERE job_id > ? ORDER BY job_id LIMIT 1", (job,)
        ).fetchone()
        if row is None:
            return Pruned(deleted, None)
        job = int(row[0])
        oldest_kept = conn.execute(
            "SELECT id FROM runs WHERE job_id = ? AND status != 'running'"
            " ORDER BY id DESC LIMIT 1 OFFSET ?",
            (job, op.keep - 1),
        ).fetchone()
        if oldest_kept is None:
            continue
        room = op.limit - deleted
        n = conn.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE job_id = ? AND id < ?"
            f" AND {_RUN_MAY_GO} LIMIT ?)",
            (job, oldest_kept[0], room),
        ).rowcount
        deleted += n
        if n >= room:  # the batch is full: this job may have more, look at it again
            return Pruned(deleted, job - 1)
    return Pruned(deleted, job)


def _runs_before(conn: sqlite3.Connection, op: PruneRunsBefore) -> Pruned:
    n = conn.execute(
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE finished_at < ?"
        f" AND {_RUN_MAY_GO} LIMIT ?)",
        (op.before, op.limit),
    ).rowcount
    return _done(n, op.limit)


def _dispatches(conn: sqlite3.Connection, op: PruneDispatches) -> Pruned:
    # the partial index's own term, written out, lets the planner use it; the order is
    # the index's, so the two statements choose the same rows
    chosen = (
        "SELECT id FROM dispatches WHERE status IN ('done', 'cancelled', 'dead')"
        " AND status = ? AND updated_at < ? AND (producer_key IS NULL OR updated_at < ?)"
        " AND id < (SELECT MAX(id) FROM dispatches) AND seq < (SELECT MAX(seq) FROM dispatches)"
        " ORDER BY updated_at, id LIMIT ?"
    )
    args = (op.status, op.before, op.keyed_before, op.limit)
    runs = 0
    if op.status == "dead":  # a dead letter keeps its runs until it goes; the newest run
        # stays whatever it belongs to (run ids are MAX(id) + 1: they never go back)
        runs = conn.execute(
            f"DELETE FROM runs WHERE dispatch_id IN ({chosen}) AND id < (SELECT MAX(id) FROM runs)",
            args,
        ).rowcount
    n = conn.execute(f"DELETE FROM dispatches WHERE id IN ({chosen})", args).rowcount
    return Pruned(n, 0 if n >= op.limit else None, runs)


def _messages(conn: sqlite3.Connection, op: PruneMessages) -> Pruned:
    n = conn.execute(
        "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE status = ?"
        " AND created_at < ? AND id < (SELECT MAX(id) FROM messages) LIMIT ?)",
        (op.status, op.before, op.limit),
    ).rowcount
    return _done(n, op.limit)


def _deliveries(conn: sqlite3.Connection, op: PruneDeliveries) -> Pruned:
    n = conn.execute(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status = ?"
        " AND updated_at < ? AND id < (SELECT MAX(id) FROM deliveries) LIMIT ?)",
        (op.status, op.before, op.limit),
    ).rowcount
    return _done(n, op.limit)


def _approvals(conn: sqlite3.Connection, op: PruneApprovals) -> Pruned:
    # ``status != 'pending'`` is the partial index's own term (approvals_resolved)
    n = conn.execute(
        "DELETE FROM approvals WHERE id IN (SELECT id FROM approvals WHERE status != 'pending'"
        " AND status IN ('approved', 'rejected', 'timed_out') AND resolved_at < ?"
        " AND id < (SELECT MAX(id) FROM approvals) AND NOT EXISTS (SELECT 1 FROM dispatches d"
        " WHERE d.id = approvals.dispatch_id AND d.status = 'awaiting_approval') LIMIT ?)",
        (op.before, op.limit),
    ).rowcount
    return _done(n, op.limit)


def _groups(conn: sqlite3.Connection, op: PruneGroups) -> Pruned:
    # ``status != 'open'`` is the partial index's own term (task_groups_ended); the order
    # is the index's, so the two statements choose the same groups
    chosen = (
        "SELECT id FROM task_groups WHERE status != 'open' AND status IN ('completed', 'failed')"
        " AND completed_at < ? AND id < (SELECT MAX(id) FROM task_groups)"
        " ORDER BY completed_at, id LIMIT ?"
    )
    args = (op.before, op.limit)
    conn.execute(f"DELETE FROM task_group_members WHERE group_id IN ({chosen})", args)
    n = conn.execute(f"DELETE FROM task_groups WHERE id IN ({chosen})", args).rowcount
    return _done(n, op.limit)


def apply_prune_op(conn: sqlite3.Connection, op: PruneOp) -> Pruned:
    match op:
        case PruneRunsPerJob():
            return _runs_per_job(conn, op)
        case PruneRunsBefore():
            return _runs_before(conn, op)
        case PruneDispatches():
            return _dispatches(conn, op)
        case PruneMessages():
            return _messages(conn, op)
        case PruneDeliveries():
            return _deliveries(conn, op)
        case PruneKeys():
            return _done(ledger.prune(conn, op.now, op.limit), op.limit)
        case PruneApprovals():
            return _approvals(conn, op)
        case PruneGroups():
            return _groups(conn, op)
        case _:
            assert_never(op)
