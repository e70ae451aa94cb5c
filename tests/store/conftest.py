"""Fixtures of the PostgreSQL-only store tests (a module that defines its own ``store``
overrides this one): ``store``, a ``PgStore`` on a fresh schema, and ``node``, another
node's raw connection on that schema (it holds writes uncommitted so an interleaving is
fixed, not left to chance); ``waits_on_a_lock`` says whether some other session is
waiting on a lock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shepherd.store.postgres.engine import PgStore


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PgStore]:
    s = await PgStore.open(pg_url)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def node(store: PgStore) -> AsyncIterator[asyncpg.Connection]:
    """Another node's writer: a connection of its own on the same schema."""
    conn = await asyncpg.connect(
        store.dsn.split("?")[0], server_settings={"search_path": store.schema}
    )
    try:
        yield conn
    finally:
        await conn.close()


async def waits_on_a_lock(store: PgStore) -> bool:
    async def probe(conn: asyncpg.Connection) -> bool:
        n = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid != pg_backend_pid()"
        )
        return int(n) > 0

    return await store.read(probe)
