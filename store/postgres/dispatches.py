"""PostgreSQL SQL of new dispatches (``InsertDispatches``, mirrors
``store.sqlite.dispatches``) and the insert every op that creates dispatches shares.

Ids and seqs come from the ``dispatches`` identity and ``dispatch_seq``, never
``max() + 1``: several nodes insert at once. A batch takes them before the insert
(``take_ids``: in row order, so its ids and seqs rise with its rows); an op of one row
takes them from the column defaults, in its one statement. A batch is one ``unnest`` insert.
Slots and producer keys are decided by the unique indexes (``dispatches_slot``,
``dispatches_producer``) with ``ON CONFLICT DO NOTHING``: when two nodes insert the
same key at once, the second waits for the first to commit and then finds its row, so
a key binds one dispatch cluster-wide. Keyed rows go in in key order, so two nodes'
batches take the index entries in the same order and cannot deadlock. A row of a job
with an approval gate is held by ``approvals.gate`` in the same transaction (its
result: ``(id, 0)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from shepherd.store.ops import InsertDispatches, NewDispatch
from shepherd.store.postgres import approvals
from shepherd.store.shared.dispatches import INSERT_COLUMNS, dispatch_values

__all__ = [
    "INSERT_DISPATCH",
    "dispatch_values",
    "insert_dispatches",
    "insert_rows",
    "take_ids",
    "take_run_ids",
]

# one row, its id and seq given (``take_ids``): the values of ``dispatch_values``
INSERT_DISPATCH = (
    f"INSERT INTO dispatches ({', '.join(INSERT_COLUMNS)}) VALUES"
    f" ($1, $2, $3, $4, $5, $6, 'queued', {', '.join(f'${n}' for n in range(7, 21))})"
)

# (column, array type) of the values ``_insert`` passes per row; origin and the
# timestamps are one value for the whole statement
_ARRAYS = (
    ("id", "bigint"),
    ("seq", "bigint"),
    ("job_id", "bigint"),
    ("job_name", "text"),
    ("kind", "text"),
    ("priority", "integer"),
    ("not_before", "double precision"),
    ("expires_at", "double precision"),
    ("attempt", "integer"),
    ("max_attempts", "integer"),
    ("payload", "bytea"),
    ("idempotency_key", "text"),
    ("slot", "double precision"),
    ("parent_run_id", "bigint"),
    ("producer_key", "text"),
    ("needs", "text"),
    ("owner", "text"),
)
_FROM_ROW = {"origin": "$1", "status": "'queued'", "created_at": "$2", "updated_at": "$2"}
_INSERT_MANY = (
    f"INSERT INTO dispatches ({', '.join(INSERT_COLUMNS)})"
    f" SELECT {', '.join(_FROM_ROW.get(c, f'r.{c}') for c in INSERT_COLUMNS)}"
    f" FROM unnest({', '.join(f'${n}::{t}[]' for n, (_, t) in enumerate(_ARRAYS, 3))})"
    f" AS r({', '.join(c for c, _ in _ARRAYS)})"
)
_INSERT_NEW = f"{_INSERT_MANY} ON CONFLICT DO NOTHING RETURNING id"

# one row, its id and seq from their defaults (an op of one row: no ``take_ids`` trip)
_ONE_COLUMNS = [c for c in INSERT_COLUMNS if c not in ("id", "seq")]
_INSERT_ONE = (
    f"INSERT INTO dispatches ({', '.join(_ONE_COLUMNS)}) VALUES"
    f" ($1, $2, $3, $4, 'queued', {', '.join(f'${n}' for n in range(5, 19))})"
)
_INSERT_ONE_NEW = f"{_INSERT_ONE} ON CONFLICT DO NOTHING RETURNING id, seq"
_INSERT_ONE += " RETURNING id, seq"

_TAKE = (
    "SELECT nextval(pg_get_serial_sequence('dispatches', 'id')), nextval('dispatch_seq')"
    " FROM generate_series(1, $1)"
)
_TAKE_RUNS = "SELECT nextval(pg_get_serial_sequence('runs', 'id')) FROM generate_series(1, $1)"

_EXISTING = (
    "SELECT k.job_id, k.key, d.id FROM unnest($1::bigint[], $2::text[]) AS k(job_id, key)"
    " JOIN dispatches d ON d.job_id = k.job_id AND d.producer_key = k.key"
)


async def take_ids(conn: asyncpg.Connection, n: int) -> list[tuple[int, int]]:
    """``n`` fresh ``(id, seq)`` pairs for new dispatches, both rising in list order."""
    if n <= 0:
        return []
    rows = await conn.fetch(_TAKE, n)
    ids, seqs = sorted(int(r[0]) for r in rows), sorted(int(r[1]) for r in rows)
    return list(zip(ids, seqs, strict=True))


async def take_run_ids(conn: asyncpg.Connection, n: int) -> list[int]:
    """``n`` fresh ids of new runs, rising (for rows whose id is needed before they
    are inserted, as a claim's)."""
    if n <= 0:
        return []
    return sorted(int(r[0]) for r in await conn.fetch(_TAKE_RUNS, n))


def _sort_key(item: tuple[NewDispatch, tuple[int, int]]) -> tuple[int, bool, float, str]:
    r = item[0]
    return (r.job_id, r.slot is None, r.slot or 0.0, r.idempotency_key or "")


async def insert_rows(
    conn: asyncpg.Connection,
    rows: Sequence[NewDispatch],
    ids: Sequence[tuple[int, int]],
    origin: str,
    now: float,
    *,
    keyed: bool,
) -> set[int]:
    """Insert ``rows`` (queued) with the ``(id, seq)`` of ``ids``, in one statement; the
    ids inserted. ``keyed``: rows with a slot or a producer key, inserted in key order
    with ``ON CONFLICT DO NOTHING`` (a row whose key is taken is not inserted)."""
    if not rows:
        return set()
    items = list(zip(rows, ids, strict=True))
    if keyed:
        items.sort(key=_sort_key)
    values = [dispatch_values(r, i, s, origin, now) for r, (i, s) in items]
    # dispatch_values' order: INSERT_COLUMNS without status; _ARRAYS picks by name
    names = [c for c in INSERT_COLUMNS if c != "status"]
    columns = [[v[names.index(c)] for v in values] for c, _ in _ARRAYS]
    if not keyed:
        await conn.execute(_INSERT_MANY, origin, float(now), *columns)
        return {i for i, _ in ids}
    return {int(r[0]) for r in await conn.fetch(_INSERT_NEW, origin, float(now), *columns)}


async def insert_dispatches(conn: asyncpg.Connection, op: InsertDispatches) -> list[Any]:
    """Per row ``(id, seq)``; the id of the dispatch that holds its producer key; or
    None where its (job, slot) has a dispatch (``store.ops.InsertDispatches``)."""
    if not op.rows:
        return []
    if len(op.rows) == 1:
        return await _gated(conn, op, [await _insert_one(conn, op.rows[0], op.origin, op.now)])
    ids = await take_ids(conn, len(op.rows))
    keyed = [
        k for k, r in enumerate(op.rows) if r.slot is not None or r.idempotency_key is not None
    ]
    keyed_set = set(keyed)
    plain = [k for k in range(len(op.rows)) if k not in keyed_set]
    out: list[tuple[int, int] | int | None] = list(ids)
    inserted = await insert_rows(
        conn, [op.rows[k] for k in keyed], [ids[k] for k in keyed], op.origin, op.now, keyed=True
    )
    await insert_rows(
        conn, [op.rows[k] for k in plain], [ids[k] for k in plain], op.origin, op.now, keyed=False
    )
    lost = [k for k in keyed if ids[k][0] not in inserted]
    if lost:
        out = await _holders(conn, op.rows, lost, out)
    return await _gated(conn, op, out)


async def _insert_one(
    conn: asyncpg.Connection, r: NewDispatch, origin: str, now: float
) -> tuple[int, int] | int | None:
    """The one row of an op: one statement, as ``insert_dispatches`` answers it."""
    values = dispatch_values(r, 0, 0, origin, now)[2:]  # its id and seq: the defaults
    if r.slot is None and r.idempotency_key is None:
        row = await conn.fetchrow(_INSERT_ONE, *values)
        return (int(row[0]), int(row[1]))
    row = await conn.fetchrow(_INSERT_ONE_NEW, *values)
    if row is not None:
        return (int(row[0]), int(row[1]))
    return (await _holders(conn, [r], [0], [None]))[0]


async def _gated(
    conn: asyncpg.Connection, op: InsertDispatches, out: list[tuple[int, int] | int | None]
) -> list[Any]:
    """``out`` with the rows the approval gate held marked ``(id, 0)``."""
    if await approvals.any_gated(conn):  # a gated row: held, its result's seq 0
        new = [
            (o[0], r.job_id, r.kind)
            for r, o in zip(op.rows, out, strict=True)
            if isinstance(o, tuple)
        ]
        out = approvals.mark_held(out, await approvals.gate(conn, new, op.now))
    return out


async def _holders(
    conn: asyncpg.Connection,
    rows: Sequence[NewDispatch],
    lost: list[int],
    out: list[tuple[int, int] | int | None],
) -> list[tuple[int, int] | int | None]:
    """``out`` with each lost row's result: the id of the dispatch holding its producer
    key (read after the insert, so a key another node just committed is seen), or None
    (a taken slot)."""
    out = list(out)
    for k in lost:
        out[k] = None
    by_key = [k for k in lost if rows[k].slot is None]
    if by_key:
        found = await conn.fetch(
            _EXISTING,
            [rows[k].job_id for k in by_key],
            [rows[k].idempotency_key for k in by_key],
        )
        held = {(int(r[0]), str(r[1])): int(r[2]) for r in found}
        for k in by_key:
            out[k] = held.get((rows[k].job_id, str(rows[k].idempotency_key)))
    return out
