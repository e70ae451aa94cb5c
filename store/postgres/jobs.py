"""PostgreSQL SQL of the job ops and the scheduler's ``RecordSlots`` commit (mirrors
``store.sqlite.jobs``).

Several nodes may write at once: ``save_job`` is one upsert by name; ``RecordSlots``
locks its jobs' rows (``FOR UPDATE``, in id order, so two schedulers cannot deadlock)
before its compare-and-set on ``next_run_at``, and inserts the slots' dispatches with
``ON CONFLICT DO NOTHING``: the unique index ``dispatches_slot`` is the last word, so a
cron slot fires once cluster-wide even if two schedulers overlap.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from shepherd.store.ops import (
    DeleteJob,
    NewDispatch,
    RecordSlots,
    SaveJob,
    SetJobState,
    SlotFailed,
)
from shepherd.store.postgres import approvals
from shepherd.store.postgres.chains import check_parent, refuse_parent
from shepherd.store.postgres.dispatches import insert_rows, take_ids

__all__ = ["delete_job", "record_slots", "save_job", "set_job_state"]

_SAVE = (
    "INSERT INTO jobs (name, executor, enabled, spec, next_run_at, anchor, created_at,"
    " updated_at, parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)"
    " ON CONFLICT (name) DO UPDATE SET executor = excluded.executor,"
    " enabled = excluded.enabled, spec = excluded.spec, next_run_at = excluded.next_run_at,"
    " anchor = excluded.anchor, updated_at = excluded.updated_at, parent = excluded.parent"
    " RETURNING id"
)


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _status_count(status: str) -> int:
    """The row count of a command's status (``UPDATE 3``, ``DELETE 1``)."""
    return int(status.rsplit(" ", 1)[-1])


# the slots a scheduler committed ahead of time that are not due yet: a changed or
# disabled job withdraws them (``SaveJob``): cancelled, their slot cleared so the job's
# new schedule may commit it again (the unique index), as on SQLite
_WITHDRAW_AHEAD = (
    "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', last_error ="
    " 'withdrawn before its slot '"
    " || to_char(to_timestamp(slot) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    " || ': ' || $3, slot = NULL, updated_at = $2"
    " WHERE job_id = (SELECT id FROM jobs WHERE name = $1)"
    " AND kind = 'schedule' AND status = 'queued' AND slot > $2"
)
_WITHDRAW_BY_ID = _WITHDRAW_AHEAD.replace("(SELECT id FROM jobs WHERE name = $1)", "$1")


async def save_job(conn: asyncpg.Connection, op: SaveJob) -> int:
    parent = await check_parent(conn, op.name, op.spec)  # a chain's graph, in this transaction
    if not op.kept:
        await conn.execute(_WITHDRAW_AHEAD, op.name, float(op.now), "the job changed")
    job_id = await conn.fetchval(
        _SAVE,
        op.name,
        op.executor,
        int(op.enabled),
        op.spec,
        _float(op.next_run_at),
        _float(op.anchor),
        float(op.now),
        parent,
    )
    return await approvals.set_gate(conn, int(job_id), op.spec)


async def delete_job(conn: asyncpg.Connection, op: DeleteJob) -> bool:
    if op.refuse_parent:
        await refuse_parent(conn, op.job_id)
    await conn.execute(
        "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
        " last_error = 'job removed', updated_at = $1"
        " WHERE job_id = $2 AND status IN ('queued', 'awaiting_approval')",
        float(op.now),
        op.job_id,
    )
    await approvals.close_for_job(conn, op.job_id, "job removed", op.now)
    await conn.execute(
        "UPDATE dispatches SET cancel_requested = 1 WHERE job_id = $1 AND status = 'running'",
        op.job_id,
    )
    return _status_count(await conn.execute("DELETE FROM jobs WHERE id = $1", op.job_id)) == 1


async def set_job_state(conn: asyncpg.Connection, op: SetJobState) -> bool:
    sets, args = ["updated_at = $1"], [float(op.now)]
    if op.set_next:
        sets.append(f"next_run_at = ${len(args) + 1}")
        args.append(_float(op.next_run_at))  # type: ignore[arg-type]
    for column in ("last_run_at", "last_status", "consecutive_errors"):
        value = getattr(op, column)
        if value is not None:
            sets.append(f"{column} = ${len(args) + 1}")
            args.append(float(value) if column == "last_run_at" else value)
    if op.enabled is not None:
        sets.append(f"enabled = ${len(args) + 1}")
        args.append(int(op.enabled))
    args.append(op.job_id)
    status = await conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ${len(args)}", *args)
    return _status_count(status) == 1


# Errors of one item's values (an int past 64 bits in a job stored before its bound
# existed, a constraint): they fail that item only. Others (the connection, the
# transaction: ``codes.fails_batch``) fail the op.
_ITEM_ERRORS = (OverflowError, asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


async def record_slots(conn: asyncpg.Connection, op: RecordSlots) -> list[Any]:
    """All items at once under one savepoint; if an item's values fail, roll that back
    and apply the items one by one, each under its own savepoint, so only the failing
    item's job gets a ``SlotFailed`` and every other job's slots commit."""
    try:
        async with conn.transaction():
            return await _record_items(conn, op)
    except _ITEM_ERRORS:
        pass
    results: list[Any] = []
    for item in op.items:
        try:
            async with conn.transaction():
                got = await _record_items(conn, RecordSlots([item], op.origin, op.now))
        except _ITEM_ERRORS as exc:
            results.append(SlotFailed(f"{type(exc).__name__}: {exc}"))
        else:
            results.extend(got)
    return results


async def _record_items(conn: asyncpg.Connection, op: RecordSlots) -> list[Any]:
    ok = await _compare_and_set(conn, op)  # locks the jobs' rows first
    bookkeeping = [
        (_float(i.last_run_at), i.last_status, i.consecutive_errors, i.job_id)
        for i in op.items
        if i.last_run_at is not None or i.consecutive_errors is not None
    ]
    if bookkeeping:
        await conn.executemany(
            "UPDATE jobs SET last_run_at = COALESCE($1, last_run_at),"
            " last_status = COALESCE($2, last_status),"
            " consecutive_errors = COALESCE($3, consecutive_errors) WHERE id = $4",
            bookkeeping,
        )
    out: list[list[tuple[int, int] | None] | None] = []
    rows: list[NewDispatch] = []
    owners: list[int] = []  # index into ``out`` of each row in ``rows``
    skipped: list[tuple[Any, ...]] = []
    now = float(op.now)
    for item, good in zip(op.items, ok, strict=True):
        if not good:
            out.append(None)
            continue
        out.append([])
        for d in item.dispatches:
            rows.append(d)
            owners.append(len(out) - 1)
        for s in item.skipped:
            details = None if s.slot is None else msgspec.json.encode({"slot": s.slot})
            skipped.append((item.job_id, item.job_name, now, now, s.reason, s.error, details))
        if item.withdraw:
            await conn.execute(_WITHDRAW_BY_ID, item.job_id, now, "error backoff")
        if item.finish == "delete":
            await delete_job(conn, DeleteJob(item.job_id, op.now))
        elif item.finish == "disable":
            await conn.execute(
                "UPDATE jobs SET enabled = 0, next_run_at = NULL, spec = COALESCE($1, spec),"
                " updated_at = $2 WHERE id = $3",
                item.spec,
                now,
                item.job_id,
            )
    for owner, result in zip(owners, await _insert_slots(conn, rows, op), strict=True):
        out[owner].append(result)  # type: ignore[union-attr]
    if skipped:
        await conn.executemany(
            "INSERT INTO runs (dispatch_id, job_id, job_name, attempt, status, started_at,"
            " finished_at, reason, error, details) VALUES (NULL, $1, $2, 0, 'skipped', $3, $4,"
            " $5, $6, $7)",
            skipped,
        )
    return out


async def _compare_and_set(conn: asyncpg.Connection, op: RecordSlots) -> list[bool]:
    """Set next_run_at where it is still ``expect_next`` and the job enabled; True where
    that held, or for a bookkeeping-only item, where the job exists. The jobs' rows are
    read ``FOR UPDATE`` (in id order): a concurrent scheduler's commit waits, then sees
    the next fire time this one wrote and its compare-and-set fails."""
    ids = sorted({i.job_id for i in op.items})
    state: dict[int, tuple[Any, int]] = {
        int(r[0]): (r[1], int(r[2]))
        for r in await conn.fetch(
            "SELECT id, next_run_at, enabled FROM jobs WHERE id = ANY($1::bigint[])"
            " ORDER BY id FOR UPDATE",
            ids,
        )
    }
    ok: list[bool] = []
    for i in op.items:
        now = state.get(i.job_id)
        good = now is not None and (not i.set_next or now == (i.expect_next, 1))
        if good and i.set_next:
            state[i.job_id] = (i.next_run_at, 1)  # a later item of the same job sees it
        ok.append(good)
    updates = [
        (_float(i.next_run_at), float(op.now), i.job_id)
        for i, g in zip(op.items, ok, strict=True)
        if g and i.set_next
    ]
    if updates:
        await conn.executemany(
            "UPDATE jobs SET next_run_at = $1, updated_at = $2 WHERE id = $3", updates
        )
    return ok


async def _insert_slots(
    conn: asyncpg.Connection, rows: list[NewDispatch], op: RecordSlots
) -> list[tuple[int, int] | None]:
    """Insert schedule dispatches; None where the (job, slot) pair already has one (the
    unique index ``dispatches_slot`` decides, on any node: no lookup per row)."""
    if not rows:
        return []
    ids = await take_ids(conn, len(rows))
    present = await insert_rows(conn, rows, ids, op.origin, op.now, keyed=True)
    out: list[tuple[int, int] | None] = [p if p[0] in present else None for p in ids]
    if await approvals.any_gated(conn):  # a gated slot: held, its result's seq 0
        new = [(o[0], r.job_id, r.kind) for r, o in zip(rows, out, strict=True) if o is not None]
        out = approvals.mark_held(out, await approvals.gate(conn, new, op.now))
    return out
