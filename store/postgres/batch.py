"""The writer's side of the PostgreSQL engine: a batch of write ops in one transaction,
each op's SQL chosen by its type (as ``store.sqlite.batch``); a failed op is rolled
back alone (``apply_batch``).

Each op function is ``async def fn(conn: asyncpg.Connection, op) -> result``, running
inside the caller's transaction; the modules of this package hold them, one per area.
The whole batch is counted in ``store.activity.THREAD_WORK`` while it runs, so a fake
clock waits for the server's answer as it waits for SQLite's thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from shepherd.store.ops import WriteOp
from shepherd.store.postgres.codes import LOST, fails_batch, op_error

__all__ = ["APPLY", "Attempt", "apply_batch", "apply_op"]

OpFn = Callable[[asyncpg.Connection, Any], Awaitable[Any]]

# each op's SQL, by the op's type; filled by ``store.postgres.ops_table`` (imported by
# the engine) so this module stays free of the area modules
APPLY: dict[type, OpFn] = {}


class Attempt:
    """How far one ``apply_batch`` got: ``committing`` once its COMMIT was sent. A
    connection lost before that took the whole transaction with it (the server rolls
    it back), so the batch may run again on a new one; lost after it, the outcome is
    unknown and the batch fails."""

    __slots__ = ("committing",)

    def __init__(self) -> None:
        self.committing = False


async def apply_op(conn: asyncpg.Connection, op: WriteOp) -> Any:
    """Run ``op``'s SQL on ``conn`` (inside the caller's transaction)."""
    fn = APPLY.get(type(op))
    if fn is None:
        raise TypeError(f"unknown write op {type(op).__name__}")
    return await fn(conn, op)


async def apply_batch(
    conn: asyncpg.Connection, ops: Sequence[WriteOp], attempt: Attempt | None = None
) -> list[Any]:
    """All ops in one transaction; a failed op's result is a ``StoreError``.

    An op that raises (a constraint, a value PostgreSQL cannot bind, a bug in the op)
    fails alone: the other ops commit. Only an error of the transaction itself
    (``codes.fails_batch``) fails the batch. Ops rarely fail, and a SAVEPOINT and its
    RELEASE are two round trips to the server per op, so the batch first runs without
    any; an op that fails then rolls the whole transaction back, and the batch runs
    again with one savepoint per op (``_apply_isolated``), which rolls back that op
    alone. A batch of one needs no savepoint: a failed op commits nothing.
    """
    results: list[Any] = []
    failed: Exception | None = None
    tr = conn.transaction()
    await tr.start()
    try:
        for op in ops:
            try:
                results.append(await apply_op(conn, op))
            except Exception as exc:
                if fails_batch(exc):
                    raise
                failed = exc
                break
        if failed is None:
            if attempt is not None:
                attempt.committing = True
            await tr.commit()
        else:
            await tr.rollback()
    except BaseException:
        await _roll_back(conn, tr)
        raise
    if failed is None:
        return results
    if len(ops) == 1:
        return [op_error(failed)]
    return await _apply_isolated(conn, ops, attempt)


async def _apply_isolated(
    conn: asyncpg.Connection, ops: Sequence[WriteOp], attempt: Attempt | None
) -> list[Any]:
    """All ops in one transaction, one SAVEPOINT each: a failed op is rolled back to its
    savepoint and its result is a ``StoreError``."""
    results: list[Any] = []
    tr = conn.transaction()
    await tr.start()
    try:
        for op in ops:
            sp = conn.transaction()
            await sp.start()
            try:
                results.append(await apply_op(conn, op))
            # Broad on purpose: the writer serves every actor, and one op's failure is
            # its caller's alone.
            except Exception as exc:
                if fails_batch(exc):
                    raise
                await sp.rollback()
                results.append(op_error(exc))
            else:
                await sp.commit()
        if attempt is not None:
            attempt.committing = True
        await tr.commit()
    except BaseException:
        await _roll_back(conn, tr)
        raise
    return results


async def _roll_back(conn: asyncpg.Connection, tr: Any) -> None:
    if not conn.is_closed():
        try:
            await tr.rollback()
        except (asyncpg.PostgresError, *LOST):
            pass
