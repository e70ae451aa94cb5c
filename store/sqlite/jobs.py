"""SQL of the job ops and the scheduler's ``RecordSlots`` commit."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from shepherd.store.ops import (
    DeleteJob,
    NewDispatch,
    RecordSlots,
    SaveJob,
    SetJobState,
    SlotFailed,
)
from shepherd.store.sqlite import approvals
from shepherd.store.sqlite.chains import check_parent, refuse_parent
from shepherd.store.sqlite.dispatches import INSERT_DISPATCH, dispatch_values, next_id, next_ids

# the slots a scheduler committed ahead of time that are not due yet: a changed or
# disabled job withdraws them (``SaveJob``): cancelled, their slot cleared so the job's
# new schedule may commit it again (the unique index); never deleted, so no id is reused
WITHDRAW_AHEAD = (
    "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', last_error ="
    " 'withdrawn before its slot ' || strftime('%Y-%m-%dT%H:%M:%fZ', slot, 'unixepoch')"
    " || ': ' || ?3, slot = NULL, updated_at = ?2"
    " WHERE job_id = ?1 AND kind = 'schedule' AND status = 'queued' AND slot > ?2"
)


def save_job(conn: sqlite3.Connection, op: SaveJob) -> int:
    parent = check_parent(conn, op.name, op.spec)  # a chain's graph, in this transaction
    row = conn.execute("SELECT id FROM jobs WHERE name = ?", (op.name,)).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO jobs (name, executor, enabled, spec, next_run_at, anchor, created_at,"
            " updated_at, parent) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                op.name,
                op.executor,
                int(op.enabled),
                op.spec,
                op.next_run_at,
                op.anchor,
                op.now,
                op.now,
                parent,
            ),
        )
        return approvals.set_gate(conn, int(cur.lastrowid or 0), op.spec)
    job_id = int(row[0])
    if not op.kept:
        conn.execute(WITHDRAW_AHEAD, (job_id, op.now, "the job changed"))
    conn.execute(
        "UPDATE jobs SET executor = ?, enabled = ?, spec = ?, next_run_at = ?, anchor = ?,"
        " updated_at = ?, parent = ? WHERE id = ?",
        (op.executor, int(op.enabled), op.spec, op.next_run_at, op.anchor, op.now, parent, job_id),
    )
    return approvals.set_gate(conn, job_id, op.spec)


def delete_job(conn: sqlite3.Connection, op: DeleteJob) -> bool:
    if op.refuse_parent:
        refuse_parent(conn, op.job_id)
    conn.execute(
        "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
        " last_error = 'job removed', updated_at = ?"
        " WHERE job_id = ? AND status IN ('queued', 'awaiting_approval')",
        (op.now, op.job_id),
    )
    approvals.close_for_job(conn, op.job_id, "job removed", op.now)
    conn.execute(
        "UPDATE dispatches SET cancel_requested = 1 WHERE job_id = ? AND status = 'running'",
        (op.job_id,),
    )
    return conn.execute("DELETE FROM jobs WHERE id = ?", (op.job_id,)).rowcount == 1


def set_job_state(conn: sqlite3.Connection, op: SetJobState) -> bool:
    sets, args = ["updated_at = ?"], [op.now]
    if op.set_next:
        sets.append("next_run_at = ?")
        args.append(op.next_run_at)  # type: ignore[arg-type]
    for column in ("last_run_at", "last_status", "consecutive_errors"):
        value = getattr(op, column)
        if value is not None:
            sets.append(f"{column} = ?")
            args.append(value)
    if op.enabled is not None:
        sets.append("enabled = ?")
        args.append(int(op.enabled))
    args.append(op.job_id)
    cur = conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", args)
    return cur.rowcount == 1


# Errors of one item's values (an int past 64 bits in a job stored before its bound
# existed, a constraint): they fail that item only. Others (disk full, I/O) fail the op.
_ITEM_ERRORS = (OverflowError, sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError)


def record_slots(conn: sqlite3.Connection, op: RecordSlots) -> list[Any]:
    """All items at once under one savepoint; if an item's values fail, roll that back
    and apply the items one by one, each under its own savepoint, so only the failing
    item's job gets a ``SlotFailed`` and every other job's slots commit."""
    conn.execute("SAVEPOINT slots")
    try:
        out = _record_items(conn, op)
    except _ITEM_ERRORS:
        conn.execute("ROLLBACK TO slots")
    else:
        conn.execute("RELEASE slots")
        return out
    conn.execute("RELEASE slots")
    results: list[Any] = []
    for item in op.items:
        conn.execute("SAVEPOINT slot")
        try:
            results.extend(_record_items(conn, RecordSlots([item], op.origin, op.now)))
        except _ITEM_ERRORS as exc:
            conn.execute("ROLLBACK TO slot")
            results.append(SlotFailed(f"{type(exc).__name__}: {exc}"))
        conn.execute("RELEASE slot")
    return results


def _record_items(conn: sqlite3.Connection, op: RecordSlots) -> list[Any]:
    bookkeeping = [
        (i.last_run_at, i.last_status, i.consecutive_errors, i.job_id)
        for i in op.items
        if i.last_run_at is not None or i.consecutive_errors is not None
    ]
    if bookkeeping:
        conn.executemany(
            "UPDATE jobs SET last_run_at = COALESCE(?, last_run_at),"
            " last_status = COALESCE(?, last_status),"
            " consecutive_errors = COALESCE(?, consecutive_errors) WHERE id = ?",
            bookkeeping,
        )
    out: list[list[tuple[int, int] | None] | None] = []
    rows: list[NewDispatch] = []
    owners: list[int] = []  # index into ``out`` of each row in ``rows``
    skipped: list[tuple[Any, ...]] = []
    for item, ok in zip(op.items, _compare_and_set(conn, op), strict=True):
        if not ok:
            out.append(None)
            continue
        out.append([])
        for d in item.dispatches:
            rows.append(d)
            owners.append(len(out) - 1)
        for s in item.skipped:
            details = None if s.slot is None else msgspec.json.encode({"slot": s.slot})
            skipped.append((item.job_id, item.job_name, op.now, op.now, s.reason, s.error, details))
        if item.withdraw:
            conn.execute(WITHDRAW_AHEAD, (item.job_id, op.now, "error backoff"))
        if item.finish == "delete":
            delete_job(conn, DeleteJob(item.job_id, op.now))
        elif item.finish == "disable":
            conn.execute(
                "UPDATE jobs SET enabled = 0, next_run_at = NULL, spec = COALESCE(?, spec),"
                " updated_at = ? WHERE id = ?",
                (item.spec, op.now, item.job_id),
            )
    for owner, result in zip(owners, _insert_slots(conn, rows, op), strict=True):
        out[owner].append(result)  # type: ignore[union-attr]
    if skipped:
        run_id = next_id(conn, "runs")
        conn.executemany(
            "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
            " finished_at, reason, error, details) VALUES (?, NULL, ?, ?, 0, 'skipped', ?, ?,"
            " ?, ?, ?)",
            [(run_id + i, *values) for i, values in enumerate(skipped)],
        )
    return out


def _compare_and_set(conn: sqlite3.Connection, op: RecordSlots) -> list[bool]:
    """Set next_run_at where it is still ``expect_next`` and the job enabled; True where
    that held, or for a bookkeeping-only item, where the job exists. One read and one
    batched update for all items (the writer's transaction makes it atomic)."""
    ids = sorted({i.job_id for i in op.items})
    state: dict[int, tuple[Any, int]] = {}
    for k in range(0, len(ids), 500):
        part = ids[k : k + 500]
        marks = ",".join("?" * len(part))
        for job_id, next_run_at, enabled in conn.execute(
            f"SELECT id, next_run_at, enabled FROM jobs WHERE id IN ({marks})", part
        ):
            state[job_id] = (next_run_at, enabled)
    ok: list[bool] = []
    for i in op.items:
        now = state.get(i.job_id)
        good = now is not None and (not i.set_next or now == (i.expect_next, 1))
        if good and i.set_next:
            state[i.job_id] = (i.next_run_at, 1)  # a later item of the same job sees it
        ok.append(good)
    conn.executemany(
        "UPDATE jobs SET next_run_at = ?, updated_at = ? WHERE id = ?",
        [
            (i.next_run_at, op.now, i.job_id)
            for i, g in zip(op.items, ok, strict=True)
            if g and i.set_next
        ],
    )
    return ok


def _insert_slots(
    conn: sqlite3.Connection, rows: list[NewDispatch], op: RecordSlots
) -> list[tuple[int, int] | None]:
    """Insert schedule dispatches; None where the (job, slot) pair already has one (the
    unique index ``dispatches_slot`` decides, so no lookup per row)."""
    if not rows:
        return []
    first_id, first_seq = next_ids(conn, "dispatches", ("id", "seq"))
    inserted = conn.executemany(
        INSERT_DISPATCH.replace("INSERT", "INSERT OR IGNORE", 1),
        [
            dispatch_values(r, first_id + k, first_seq + k, op.origin, op.now)
            for k, r in enumerate(rows)
        ],
    ).rowcount
    out: list[tuple[int, int] | None] = [(first_id + k, first_seq + k) for k in range(len(rows))]
    if inserted < len(rows):
        present = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM dispatches WHERE id >= ? AND id < ?",
                (first_id, first_id + len(rows)),
            )
        }
        out = [o if o is not None and o[0] in present else None for o in out]
    if approvals.any_gated(conn):  # a gated slot: held, its result's seq 0
        new = [(o[0], r.job_id, r.kind) for r, o in zip(rows, out, strict=True) if o is not None]
        out = approvals.mark_held(out, approvals.gate(conn, new, op.now))
    return out
