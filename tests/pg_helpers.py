"""PostgreSQL for tests: one scratch database per test run, one fresh schema per test.

The server is ``SHEPHERD_TEST_PG`` (default: the one on this machine,
``postgresql://postgres@127.0.0.1:5432/postgres``). The session creates a database of
its own (``shepherd_t_<pid>_<hex>``) and drops it at the end; each test that takes
``pg_url`` gets a new schema in it, named in the URL's ``search_path``. When no server
answers, the tests skip, unless ``SHEPHERD_REQUIRE_SERVICES=1`` (``.ci/run``), which
makes that a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import Iterator

import asyncpg
import pytest

SERVER = os.environ.get("SHEPHERD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE = os.environ.get("SHEPHERD_REQUIRE_SERVICES") == "1"
_schemas = itertools.count(1)


def _url(database: str, query: str = "") -> str:
    base, _, _old = SERVER.rpartition("/")
    return f"{base}/{database}{query}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(SERVER, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _unavailable(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"PostgreSQL is required (SHEPHERD_REQUIRE_SERVICES=1): {why}")
    pytest.skip(f"no PostgreSQL server: {why}")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of this run's scratch database (created here, dropped at the end)."""
    name = f"shepherd_t_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"{SERVER}: {exc}")
    try:
        yield _url(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def new_schema_url(database_url: str) -> str:
    """A URL of ``database_url`` whose search_path is a schema no one has used yet
    (the engine creates it on open)."""
    return f"{database_url}?search_path=t{next(_schemas)}_{secrets.token_hex(2)}"


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A fresh, empty shepherd database on the server: a new schema of the run's one."""
    return new_schema_url(pg_database)
