"""Write ops for jobs and the scheduler's commit: save / delete / update a job and
``RecordSlots`` (due slots' dispatches, skipped slots, next fire time) with their SQL.
Split from ``store.ops``, which applies them and re-exports them.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

import msgspec

from shepherd.store.ops_dispatch import _INSERT_DISPATCH, NewDispatch, _dispatch_values, _next_id

__all__ = ["DeleteJob", "RecordSlots", "SaveJob", "SetJobState", "SkippedSlot", "SlotItem"]


class SaveJob(msgspec.Struct, frozen=True, tag=True):
    """Insert or replace a job by name. Returns the job id."""

    name: str
    executor: str
    enabled: bool
    spec: bytes
    next_run_at: float | None
    now: float
    anchor: float | None = None


class DeleteJob(msgspec.Struct, frozen=True, tag=True):
    """Remove a job; its queued dispatches are cancelled. Returns True if it existed."""

    job_id: int
    now: float


class SetJobState(msgspec.Struct, frozen=True, tag=True):
    job_id: int
    now: float
    next_run_at: float | None = None
    set_next: bool = False
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int | None = None
    enabled: bool | None = None


class SkippedSlot(msgspec.Struct, frozen=True, kw_only=True):
    """A scheduled slot that does not run: recorded as a ``skipped`` run with the reason."""

    slot: float | None
    reason: str  # missed | backoff | duplicate-slot
    error: str


class SlotItem(msgspec.Struct, frozen=True, kw_only=True):
    """One job's part of a ``RecordSlots`` op.

    ``next_run_at``, the dispatches and the skipped records are written only if the
    job is still enabled and its stored ``next_run_at`` is still ``expect_next``
    (compare-and-set: a concurrent change of the job wins, the scheduler reloads it).
    ``last_*`` / ``consecutive_errors`` are written whenever the job exists. ``finish``
    ends a job after its last run: ``disable`` (writing ``spec``) or ``delete``.
    """

    job_id: int
    job_name: str
    expect_next: float | None = None
    set_next: bool = True
    next_run_at: float | None = None
    dispatches: list[NewDispatch] = msgspec.field(default_factory=list)
    skipped: list[SkippedSlot] = msgspec.field(default_factory=list)
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int | None = None
    finish: Literal["", "disable", "delete"] = ""
    spec: bytes | None = None


class RecordSlots(msgspec.Struct, frozen=True, tag=True):
    """The scheduler's commit: for each job, its due slots' dispatches (kind
    ``schedule``, unique per (job, slot)), a record for every slot that does not run,
    its next fire time and its run bookkeeping, in one transaction. Returns per item
    ``None`` when the compare-and-set failed (job gone, disabled or changed), else
    ``list[tuple[id, seq] | None]`` for its dispatches (None: the slot already has one)."""

    items: list[SlotItem]
    origin: str
    now: float


def _save_job(conn: sqlite3.Connection, op: SaveJob) -> int:
    row = conn.execute("SELECT id FROM jobs WHERE name = ?", (op.name,)).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO jobs (name, executor, enabled, spec, next_run_at, anchor, created_at,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                op.name,
                op.executor,
                int(op.enabled),
                op.spec,
                op.next_run_at,
                op.anchor,
                op.now,
                op.now,
            ),
        )
        return int(cur.lastrowid or 0)
    job_id = int(row[0])
    conn.execute(
        "UPDATE jobs SET executor = ?, enabled = ?, spec = ?, next_run_at = ?, anchor = ?,"
        " updated_at = ? WHERE id = ?",
        (op.executor, int(op.enabled), op.spec, op.next_run_at, op.anchor, op.now, job_id),
    )
    return job_id


def _delete_job(conn: sqlite3.Connection, op: DeleteJob) -> bool:
    conn.execute(
        "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
        " last_error = 'job removed', updated_at = ? WHERE job_id = ? AND status = 'queued'",
        (op.now, op.job_id),
    )
    conn.execute(
        "UPDATE dispatches SET cancel_requested = 1 WHERE job_id = ? AND status = 'running'",
        (op.job_id,),
    )
    return conn.execute("DELETE FROM jobs WHERE id = ?", (op.job_id,)).rowcount == 1


def _set_job_state(conn: sqlite3.Connection, op: SetJobState) -> bool:
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


def _record_slots(conn: sqlite3.Connection, op: RecordSlots) -> list[Any]:
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
        if item.finish == "delete":
            _delete_job(conn, DeleteJob(item.job_id, op.now))
        elif item.finish == "disable":
            conn.execute(
                "UPDATE jobs SET enabled = 0, next_run_at = NULL, spec = COALESCE(?, spec),"
                " updated_at = ? WHERE id = ?",
                (item.spec, op.now, item.job_id),
            )
    for owner, result in zip(owners, _insert_slots(conn, rows, op), strict=True):
        out[owner].append(result)  # type: ignore[union-attr]
    if skipped:
        run_id = _next_id(conn, "runs")
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
    first_id, first_seq = _next_id(conn, "dispatches"), _next_id(conn, "dispatches", "seq")
    inserted = conn.executemany(
        _INSERT_DISPATCH.replace("INSERT", "INSERT OR IGNORE", 1),
        [
            _dispatch_values(r, first_id + k, first_seq + k, op.origin, op.now)
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
    return out
