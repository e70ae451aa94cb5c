"""``shepherd db upgrade``: bring a database's schema to this code's level, on either
engine, and say from which level to which.

- PostgreSQL: the URL's schema is created when missing and migrated under the
  migration advisory lock (``store.postgres.opening.migrate``), so nodes upgrading at
  once migrate once;
- SQLite: the file must exist (a mistyped path is not a new database); it is checked
  (the bounded integrity check) and migrated in one transaction, as opening it for a
  runtime would.

A schema newer than this code is refused (``SchemaTooNew``, a ``StoreError``: exit 3)
and left untouched.
"""

from __future__ import annotations

import msgspec

from shepherd.store.errors import NotFound, StoreError
from shepherd.store.factory import database_path, is_postgres

__all__ = ["SchemaTooNew", "Upgrade", "upgrade_schema"]


class SchemaTooNew(StoreError):
    """The database was migrated by a newer shepherd than this one."""


class Upgrade(msgspec.Struct, frozen=True):
    engine: str
    database: str  # the file, or the URL without its password
    schema: str | None  # PostgreSQL's schema name
    before: int  # the level found (0: no shepherd schema yet)
    after: int  # this code's level

    @property
    def migrated(self) -> bool:
        return self.after != self.before


def _too_new(where: str, have: int, latest: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{where}: schema version {have} is newer than this shepherd's ({latest}); it was"
        " migrated by a newer release: run that release (or newer), nothing was changed"
    )


async def upgrade_schema(database: str) -> Upgrade:
    """Migrate ``database`` (a file path or a postgresql:// URL) to this code's level."""
    if is_postgres(database):
        return await _upgrade_postgres(database)
    return await _upgrade_sqlite(database_path(database))


async def _upgrade_postgres(dsn: str) -> Upgrade:
    from shepherd.store.postgres import opening
    from shepherd.store.postgres.schema import SCHEMA_VERSION

    conn = await opening.connect(dsn)
    try:
        schema = await opening._schema(conn, True)
        have = await opening.schema_version(conn)
        if have > SCHEMA_VERSION:
            raise _too_new(f"{opening.redact(dsn)} (schema {schema!r})", have, SCHEMA_VERSION)
        before, after = await opening.migrate(conn, schema)
    finally:
        await conn.close()
    return Upgrade("postgresql", opening.redact(dsn), schema, before, after)


async def _upgrade_sqlite(path: str) -> Upgrade:
    import anyio

    from shepherd.store.sqlite.engine import SqliteStore
    from shepherd.store.sqlite.schema import SCHEMA_VERSION
    from shepherd.store.sqlite.upgrade import file_schema_version

    have = await anyio.to_thread.run_sync(file_schema_version, path)
    if have is None:
        raise NotFound(f"{path}: no such database file")
    if have > SCHEMA_VERSION:
        raise _too_new(path, have, SCHEMA_VERSION)
    store = await SqliteStore.open(path, create=False, check="bounded")  # migrates
    await store.close(checkpoint=True)
    return Upgrade("sqlite", path, None, have, SCHEMA_VERSION)
