"""New dispatches: ``NewDispatch``, ``InsertDispatches`` and the insert SQL that the
schedule ops share. Split from ``store.ops``, which applies it and re-exports its names.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

__all__ = ["InsertDispatches", "NewDispatch"]


class NewDispatch(msgspec.Struct, frozen=True, kw_only=True):
    job_id: int
    job_name: str
    kind: str
    priority: int
    not_before: float
    max_attempts: int
    expires_at: float | None = None
    payload: bytes | None = None
    idempotency_key: str | None = None
    slot: float | None = None
    parent_run_id: int | None = None
    attempt: int = 0


class InsertDispatches(msgspec.Struct, frozen=True, tag=True):
    """Returns, per row: ``(id, seq)`` of the new dispatch; the id (an ``int``) of the
    dispatch that already holds the row's producer key; or None where the (job, slot)
    already has a dispatch.

    A row without a slot that carries an ``idempotency_key`` carries its producer's key:
    it is also stored as ``producer_key``, which the unique index ``dispatches_producer``
    binds to this one dispatch of the job for as long as the row exists (whatever its
    state; only ``dlq retry`` runs a dead one again)."""

    rows: list[NewDispatch]
    origin: str
    now: float


def _next_id(conn: sqlite3.Connection, table: str, column: str = "id") -> int:
    row = conn.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()
    return int(row[0]) + 1


_INSERT_DISPATCH = (
    "INSERT INTO dispatches (id, seq, origin, job_id, job_name, kind, status, priority,"
    " not_before, expires_at, attempt, max_attempts, payload, idempotency_key, slot,"
    " parent_run_id, created_at, updated_at, producer_key)"
    " VALUES (?,?,?,?,?,?,'queued',?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _dispatch_values(
    r: NewDispatch, dispatch_id: int, seq: int, origin: str, now: float
) -> tuple[Any, ...]:
    return (
        dispatch_id,
        seq,
        origin,
        r.job_id,
        r.job_name,
        r.kind,
        r.priority,
        r.not_before,
        r.expires_at,
        r.attempt,
        r.max_attempts,
        r.payload,
        r.idempotency_key,
        r.slot,
        r.parent_run_id,
        now,
        now,
        r.idempotency_key if r.slot is None else None,
    )


_EXISTING = "SELECT id FROM dispatches WHERE job_id = ? AND producer_key = ?"


def _insert_dispatches(conn: sqlite3.Connection, op: InsertDispatches) -> list[Any]:
    next_id = _next_id(conn, "dispatches")
    next_seq = _next_id(conn, "dispatches", "seq")
    out: list[tuple[int, int] | int | None] = []
    plain: list[tuple[Any, ...]] = []
    for r in op.rows:
        values = _dispatch_values(r, next_id, next_seq, op.origin, op.now)
        if r.slot is None and r.idempotency_key is None:
            plain.append(values)
        # the unique indexes decide (slot, producer key): no lookup before the insert
        elif conn.execute(f"{_INSERT_DISPATCH} ON CONFLICT DO NOTHING", values).rowcount == 0:
            held = None
            if r.slot is None:
                held = conn.execute(_EXISTING, (r.job_id, r.idempotency_key)).fetchone()
            out.append(int(held[0]) if held is not None else None)
            continue
        out.append((next_id, next_seq))
        next_id += 1
        next_seq += 1
    if plain:
        conn.executemany(_INSERT_DISPATCH, plain)
    return out
