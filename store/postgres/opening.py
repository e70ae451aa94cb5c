"""Opening a PostgreSQL database: connections, the server and pooler checks, and the
schema's migrations (``store.postgres.schema``).

- The writer is one dedicated connection; reads use a small pool (2 to 4).
- The schema is ``current_schema()``: the first schema of the DSN's ``search_path``
  (``postgresql://host/db?search_path=shepherd``), created when missing; ``public``
  by default.
- A connection pooler in transaction mode (pgbouncer ``pool_mode = transaction``) hands
  each transaction to any server backend, which breaks LISTEN/NOTIFY, session advisory
  locks (the scheduler's leadership) and prepared statements: it is detected by the
  backend pid changing between transactions and refused with a ``ConfigError`` naming
  ``database``.
- Migrating holds a transaction-level advisory lock, so nodes starting at once migrate
  once; a schema newer than this code is refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import asyncpg
import msgspec

from shepherd.store.errors import ConfigError, StoreError
from shepherd.store.postgres.codes import translate
from shepherd.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "POOL_MAX",
    "Opened",
    "advisory_key",
    "backend_name",
    "connect",
    "migrate",
    "open_connections",
    "redact",
]

POOL_MAX = 4  # the read pool's connections at most

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class Opened(msgspec.Struct, frozen=True):
    writer: asyncpg.Connection
    pool: asyncpg.Pool
    schema: str
    server_version: str
    backend: str = ""  # every connection's application_name (``backend_name``), if a node


def backend_name(schema: str, node: str) -> str:
    """The ``application_name`` of every connection ``node`` opens on ``schema``, so a
    rescue can end them (``store.postgres.cluster``): a hash of both keeps nodes and
    schemas apart even where the server cuts the name to 63 bytes."""
    digest = hashlib.sha1(f"{schema}\0{node}".encode()).hexdigest()[:12]
    return f"shepherd {digest} {node}".encode()[:63].decode(errors="ignore")


def redact(dsn: str) -> str:
    """``dsn`` without its password."""
    return _PASSWORD.sub(r"\1***@", dsn)


def advisory_key(schema: str, purpose: str) -> str:
    """The SQL expression of an advisory-lock key for ``purpose`` in ``schema`` (keys
    are per database; the schema's name keeps two shepherd schemas apart)."""
    return f"hashtextextended('shepherd:' || {_literal(schema)} || ':{purpose}', 0)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection to ``dsn``; a ``StoreError`` naming the server when it fails."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(dsn, **kwargs)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise translate(exc, redact(dsn)) from None
    except ValueError as exc:  # a malformed DSN
        raise ConfigError(f"invalid PostgreSQL URL: {exc}", field="database") from None
    return conn


async def _check_pooler(conn: asyncpg.Connection, dsn: str) -> None:
    pids = {await conn.fetchval("SELECT pg_backend_pid()") for _ in range(4)}
    if len(pids) > 1:
        raise ConfigError(
            f"{redact(dsn)} goes through a connection pooler in transaction mode (the"
            " server backend changed between transactions): LISTEN/NOTIFY, advisory locks"
            " and prepared statements need one backend per connection; connect to the"
            " server directly or use session pooling",
            field="database",
        )


async def _schema(conn: asyncpg.Connection, create: bool) -> str:
    current = await conn.fetchval("SELECT current_schema()")
    if current is not None:
        return str(current)
    path = str(await conn.fetchval("SHOW search_path"))
    # an unquoted name folds to lower case, as PostgreSQL resolves it
    names = [
        p.strip()[1:-1] if p.strip().startswith('"') else p.strip().lower()
        for p in path.split(",")
        if p.strip() != '"$user"'
    ]
    if not names or not names[0]:
        raise ConfigError(f"search_path {path!r} names no schema", field="database")
    if not create:
        raise StoreError(f"schema {names[0]!r} does not exist (`shepherd db upgrade` creates it)")
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{names[0].replace(chr(34), "")}"')
    return names[0]


async def schema_version(conn: asyncpg.Connection) -> int:
    """The schema's level (0: no shepherd tables yet)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection, schema: str) -> tuple[int, int]:
    """Bring the schema to ``SCHEMA_VERSION``: ``(from, to)``. Refuses a newer one."""
    async with conn.transaction():
        await conn.execute(f"SELECT pg_advisory_xact_lock({advisory_key(schema, 'migrate')})")
        have = await schema_version(conn)
        if have > SCHEMA_VERSION:
            raise StoreError(
                f"schema {schema!r} is at version {have}, newer than this shepherd"
                f" ({SCHEMA_VERSION}): upgrade shepherd to open it"
            )
        if have == 0:
            await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            await conn.execute("INSERT INTO schema_version VALUES (0)")
        for level in range(have, SCHEMA_VERSION):
            for statement in MIGRATIONS[level]:
                await conn.execute(statement)
        if have != SCHEMA_VERSION:
            await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION)
    return have, SCHEMA_VERSION


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The read pool's reset on release: nothing. A read leaves no session state (no
    LISTEN, no session lock or setting, no cursor: those have connections of their
    own), and asyncpg still rolls back an open transaction first; its default reset
    (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) would cost every
    read a second round trip."""


async def open_connections(
    dsn: str, *, create: bool = True, migrate_schema: bool = True, node: str = ""
) -> Opened:
    """The writer and the read pool of ``dsn``, its schema migrated (``migrate_schema``)
    or checked to be at this code's level; with ``node``, every connection is named
    ``backend_name(schema, node)``."""
    writer = await connect(dsn)
    pool: asyncpg.Pool | None = None
    try:
        await _check_pooler(writer, dsn)
        schema = await _schema(writer, create)
        have = await schema_version(writer)
        if have > SCHEMA_VERSION or (migrate_schema and create):
            await migrate(writer, schema)
        elif have == 0:
            raise StoreError(
                f"{redact(dsn)}: no shepherd schema in {schema!r} (run `shepherd db upgrade`)"
            )
        elif have < SCHEMA_VERSION:
            raise StoreError(
                f"{redact(dsn)}: schema {schema!r} is at version {have}, older than this"
                f" shepherd ({SCHEMA_VERSION}): run `shepherd db upgrade`"
            )
        version = str(writer.get_server_version())
        backend = backend_name(schema, node) if node else ""
        settings = {"application_name": backend} if backend else None
        if backend:
            await writer.execute("SELECT set_config('application_name', $1, false)", backend)
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=POOL_MAX, server_settings=settings, reset=_keep_session
        )
    except BaseException as exc:
        await writer.close()
        if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            raise translate(exc, redact(dsn)) from None
        raise
    assert pool is not None
    return Opened(writer, pool, schema, version, backend)
