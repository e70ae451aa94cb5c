"""SQL of new dispatches (``InsertDispatches``) and the insert the scheduler's
``RecordSlots`` shares. Ids and seqs are ``MAX() + 1``, and past the number in
``id_floors`` (``next_id``): a deletion that takes the newest row (a dead letter's purge)
leaves its number there, so no id or seq is handed out twice. A row of a job with an
approval gate is held by ``approvals.gate`` in the same transaction (its result:
``(id, 0)``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from shepherd.store.ops import InsertDispatches
from shepherd.store.shared.dispatches import INSERT_COLUMNS, dispatch_values
from shepherd.store.sqlite import approvals

__all__ = [
    "FLOORED",
    "INSERT_DISPATCH",
    "dispatch_values",
    "insert_dispatches",
    "next_id",
    "next_ids",
    "raise_floors",
]

# the numbers ``next_id`` hands out that a deletion may free: (table, column)
FLOORED = (("dispatches", "id"), ("dispatches", "seq"), ("runs", "id"))


def next_id(conn: sqlite3.Connection, table: str, column: str = "id") -> int:
    """The next ``column`` of ``table``: past its highest, and past the highest a
    deleted row held (``id_floors``, migration 14), in one statement."""
    return next_ids(conn, table, (column,))[0]


def next_ids(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> list[int]:
    """``next_id`` of each of ``columns`` of ``table``, all in one statement (a new
    dispatch's id and seq)."""
    tops = ", ".join(
        f"max(COALESCE((SELECT MAX({c}) FROM {table}), 0),"
        f" COALESCE((SELECT last FROM id_floors WHERE name = '{table}.{c}'), 0))"
        for c in columns
    )
    return [int(top) + 1 for top in conn.execute(f"SELECT {tops}").fetchone()]


def raise_floors(conn: sqlite3.Connection) -> None:
    """Before a deletion that may take the newest rows: keep each ``FLOORED`` number's
    highest in ``id_floors``, so ``next_id`` never hands it out again."""
    for table, column in FLOORED:
        if top := next_id(conn, table, column) - 1:
            conn.execute(
                "INSERT INTO id_floors (name, last) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET last = max(last, excluded.last)",
                (f"{table}.{column}", top),
            )


INSERT_DISPATCH = (
    f"INSERT INTO dispatches ({', '.join(INSERT_COLUMNS)})"
    " VALUES (?,?,?,?,?,?,'queued',?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


_EXISTING = "SELECT id FROM dispatches WHERE job_id = ? AND producer_key = ?"


def insert_dispatches(conn: sqlite3.Connection, op: InsertDispatches) -> list[Any]:
    new_id, next_seq = next_ids(conn, "dispatches", ("id", "seq"))
    out: list[tuple[int, int] | int | None] = []
    plain: list[tuple[Any, ...]] = []
    for r in op.rows:
        values = dispatch_values(r, new_id, next_seq, op.origin, op.now)
        if r.slot is None and r.idempotency_key is None:
            plain.append(values)
        # the unique indexes decide (slot, producer key): no lookup before the insert
        elif conn.execute(f"{INSERT_DISPATCH} ON CONFLICT DO NOTHING", values).rowcount == 0:
            held = None
            if r.slot is None:
                held = conn.execute(_EXISTING, (r.job_id, r.idempotency_key)).fetchone()
            out.append(int(held[0]) if held is not None else None)
            continue
        out.append((new_id, next_seq))
        new_id += 1
        next_seq += 1
    if plain:
        conn.executemany(INSERT_DISPATCH, plain)
    if approvals.any_gated(conn):  # a gated row: held, its result's seq 0
        new = [
            (o[0], r.job_id, r.kind)
            for r, o in zip(op.rows, out, strict=True)
            if isinstance(o, tuple)
        ]
        out = approvals.mark_held(out, approvals.gate(conn, new, op.now))
    return out
