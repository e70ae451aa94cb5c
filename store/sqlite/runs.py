"""SQL of the ops that settle, recover or administer dispatches and runs without
claiming them (settle, crash recovery, cancel, dead-letter retry / purge), heartbeats
and the status snapshot."""

from __future__ import annotations

import sqlite3
from typing import Any

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
from shepherd.store.sqlite import alerts, approvals, ledger
from shepherd.store.sqlite.dispatches import next_id, raise_floors


def settle_queued(conn: sqlite3.Connection, op: SettleQueued) -> list[bool]:
    out: list[bool] = []
    run_id = next_id(conn, "runs")
    for item in op.items:
        cur = conn.execute(
            "UPDATE dispatches SET status = ?, outcome = ?, dead_reason = ?, last_error = ?,"
            " updated_at = ? WHERE id = ? AND status = 'queued'",
            (
                item.status,
                item.outcome,
                item.reason if item.status == "dead" else None,
                item.reason,
                op.now,
                item.dispatch_id,
            ),
        )
        ok = cur.rowcount == 1
        if ok and item.record_run:
            conn.execute(
                "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status,"
                " started_at, finished_at, reason, error)"
                " SELECT ?, id, job_id, job_name, attempt, ?, ?, ?, ?, ? FROM dispatches"
                " WHERE id = ?",
                (run_id, item.outcome, op.now, op.now, item.reason, item.reason, item.dispatch_id),
            )
            run_id += 1
        if ok and item.status == "dead":
            alerts.queue_alert(conn, item.dispatch_id, op.now, op.alert)
        out.append(ok)
    return out


def recover_orphans(conn: sqlite3.Connection, op: RecoverOrphans) -> list[tuple[int, int, str]]:
    rows = conn.execute(
        "SELECT r.id, r.dispatch_id, j.spec, d.attempt,"
        " COALESCE(r.idempotency_key, d.idempotency_key) FROM runs r"
        " LEFT JOIN dispatches d ON d.id = r.dispatch_id"
        " LEFT JOIN jobs j ON j.id = r.job_id WHERE r.status = 'running'"
    ).fetchall()
    out: list[tuple[int, int, str]] = []
    seq = next_id(conn, "dispatches", "seq")
    ledger.release_runs(conn, [int(r[0]) for r in rows], op.now)
    for run_id, dispatch_id, spec, attempt, key in rows:
        conn.execute(
            "UPDATE runs SET status = 'crashed', finished_at = ?, process = ?,"
            " error = 'the process running it died', reason = 'orphaned' WHERE id = ?",
            (op.now, op.processes.get(int(run_id)), run_id),
        )
        guarantee = "at-most-once"
        if spec is not None:
            guarantee = msgspec.json.decode(spec).get("delivery_guarantee", guarantee)
        if dispatch_id is None:
            continue
        if guarantee == "at-least-once":
            conn.execute(
                "UPDATE dispatches SET status = 'queued', seq = ?, origin = ?, not_before = ?,"
                " max_attempts = MAX(max_attempts, attempt + 1), outcome = 'crashed',"
                " last_error = 'replayed after a crash', current_run_id = NULL,"
                " agent = NULL, assigned_at = NULL,"
                " idempotency_key = ?, updated_at = ? WHERE id = ? AND status = 'running'",
                (
                    seq,
                    op.origin,
                    op.now,
                    keys.replay_key(key, dispatch_id, (attempt or 0) + 1),
                    op.now,
                    dispatch_id,
                ),
            )
            seq += 1
            action = "replay"
        else:
            cur = conn.execute(
                "UPDATE dispatches SET status = 'dead', outcome = 'crashed',"
                " dead_reason = 'crashed', last_error = 'the process running it died',"
                " updated_at = ? WHERE id = ? AND status = 'running'",
                (op.now, dispatch_id),
            )
            action = "dead"
            if cur.rowcount == 1:
                alerts.queue_alert(conn, dispatch_id, op.now, op.alert)
        out.append((int(run_id), int(dispatch_id), action))
    # a dispatch marked running with no running run (cannot happen with one-transaction
    # claims, but a foreign writer or an old version could leave one): requeue it
    conn.execute(
        "UPDATE dispatches SET status = 'queued', current_run_id = NULL, updated_at = ?"
        " WHERE status = 'running' AND (current_run_id IS NULL OR current_run_id NOT IN"
        " (SELECT id FROM runs WHERE status = 'running'))"
        " AND id NOT IN (SELECT dispatch_id FROM runs WHERE status = 'crashed' AND"
        " finished_at = ?)",
        (op.now, op.now),
    )
    return out


def record_process(conn: sqlite3.Connection, op: RecordProcess) -> bool:
    cur = conn.execute(
        "UPDATE runs SET pgid = ?, proc_start = ?, proc_clock = ?"
        " WHERE id = ? AND status = 'running'",
        (op.pgid, op.start, op.clock, op.run_id),
    )
    return cur.rowcount == 1


def orphaned_processes(conn: sqlite3.Connection) -> list[tuple[int, int, int, str]]:
    """``(run_id, pgid, start, clock)`` of every running run that recorded a process
    group: read by crash recovery before ``RecoverOrphans`` (a read, on any connection)."""
    rows = conn.execute(
        "SELECT id, pgid, proc_start, proc_clock FROM runs"
        " WHERE status = 'running' AND pgid IS NOT NULL"
    ).fetchall()
    return [(int(r[0]), int(r[1]), int(r[2] or 0), str(r[3] or "")) for r in rows]


def cancel_dispatch(conn: sqlite3.Connection, op: CancelDispatch) -> str | None:
    row = conn.execute("SELECT status FROM dispatches WHERE id = ?", (op.dispatch_id,)).fetchone()
    if row is None:
        return None
    status = str(row[0])
    if status == "queued":
        conn.execute(
            "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', updated_at = ?"
            " WHERE id = ?",
            (op.now, op.dispatch_id),
        )
        return "cancelled"
    if status == "awaiting_approval":  # its approval is closed with it
        conn.execute(
            "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', updated_at = ?"
            " WHERE id = ?",
            (op.now, op.dispatch_id),
        )
        approvals.close_for_dispatch(conn, op.dispatch_id, "cancelled", op.now)
        return "cancelled"
    if status == "running":
        conn.execute(
            "UPDATE dispatches SET cancel_requested = 1, updated_at = ? WHERE id = ?",
            (op.now, op.dispatch_id),
        )
    return status


def retry_dead(conn: sqlite3.Connection, op: RetryDead) -> list[int]:
    done: list[int] = []
    seq = next_id(conn, "dispatches", "seq")
    for dispatch_id in op.ids:
        cur = conn.execute(
            "UPDATE dispatches SET status = 'queued', seq = ?, origin = ?, attempt = 0,"
            " not_before = ?, dead_reason = NULL, expires_at = NULL, current_run_id = NULL,"
            " cancel_requested = 0, agent = NULL, assigned_at = NULL, updated_at = ?"
            " WHERE id = ? AND status = 'dead'",
            (seq, op.origin, op.now, op.now, dispatch_id),
        )
        if cur.rowcount == 1:
            done.append(dispatch_id)
            seq += 1
    return done


def purge_dead(conn: sqlite3.Connection, op: PurgeDead) -> int:
    args: list[Any]
    if op.ids is not None:
        marks = ",".join("?" * len(op.ids)) or "NULL"
        where, args = f"+status = 'dead' AND id IN ({marks})", list(op.ids)  # by id
    elif op.before is not None:
        where, args = "status = 'dead' AND updated_at < ?", [op.before]
    else:
        where, args = "status = 'dead'", []
    raise_floors(conn)  # it may take the newest dispatch and run: their numbers stay used
    conn.execute(
        f"DELETE FROM runs WHERE dispatch_id IN (SELECT id FROM dispatches WHERE {where})", args
    )
    return conn.execute(f"DELETE FROM dispatches WHERE {where}", args).rowcount


def heartbeats(conn: sqlite3.Connection, op: Heartbeats) -> int:
    cur = conn.executemany(
        "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'",
        [(at, run_id) for run_id, at in op.items],
    )
    return cur.rowcount


def save_status(conn: sqlite3.Connection, op: SaveStatus) -> None:
    conn.execute(
        "INSERT INTO instances (instance, pid, started_at, updated_at, stopped_at, status)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(instance) DO UPDATE SET"
        " updated_at = excluded.updated_at, stopped_at = excluded.stopped_at,"
        " status = excluded.status",
        (op.instance, op.pid, op.started_at, op.now, op.now if op.stopped else None, op.status),
    )
