"""Transactional enqueue: new dispatches written on the caller's own asyncpg
connection, inside its transaction, so they commit or roll back with the caller's data
(``shepherd.runtime.enqueue_in`` is the public call; this is its SQL half).

- The insert is ``InsertDispatches``' own (``dispatches.insert_dispatches``: producer
  keys, approval gates), run in a savepoint (a transaction when the connection has none),
  so an error here leaves the caller's transaction usable.
- ``schema``: the shepherd schema when it is not first in the connection's
  ``search_path``; it is put first for these statements only, then restored.
- Nothing is told to any runtime: the commit fires the dispatches trigger's NOTIFY
  (``store.postgres.listen``), which wakes every node; a rollback wakes no one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from shepherd.store.errors import StoreError
from shepherd.store.models import JobRow
from shepherd.store.ops import InsertDispatches
from shepherd.store.postgres import queries
from shepherd.store.postgres.dispatches import insert_dispatches

__all__ = ["insert_in", "job_in"]


def _quoted(schema: str) -> str:
    return '"' + schema.replace('"', '""') + '"'


@asynccontextmanager
async def _in_schema(conn: asyncpg.Connection, schema: str | None) -> AsyncIterator[None]:
    """A savepoint on ``conn`` with ``schema`` first in its search_path."""
    async with conn.transaction():
        if schema is None:
            yield
            return
        old = await conn.fetchval("SELECT current_setting('search_path')")
        await conn.execute("SELECT set_config('search_path', $1, true)", _quoted(schema))
        try:
            yield
        finally:
            await conn.execute("SELECT set_config('search_path', $1, true)", old)


async def job_in(
    conn: asyncpg.Connection, name: str, *, schema: str | None = None
) -> JobRow | None:
    """The job named ``name``, read on ``conn`` (in its transaction)."""
    try:
        async with _in_schema(conn, schema):
            return await queries.get_job(conn, name)
    except asyncpg.UndefinedTableError:
        path = await conn.fetchval("SELECT current_setting('search_path')")
        raise StoreError(
            f"no shepherd schema on this connection's search_path ({path}): pass schema="
            " (the search_path of the runtimes' database URL)"
        ) from None


async def insert_in(
    conn: asyncpg.Connection, op: InsertDispatches, *, schema: str | None = None
) -> list[Any]:
    """``op`` on ``conn``, in the caller's transaction: ``InsertDispatches``' results."""
    async with _in_schema(conn, schema):
        return await insert_dispatches(conn, op)
