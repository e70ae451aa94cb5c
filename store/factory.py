"""Opening a store: the engine is chosen by the database string.

- a file path, or a ``sqlite:///`` URL (``sqlite:///relative.db``,
  ``sqlite:////absolute/path.db``): the SQLite engine (``store.sqlite``);
- ``postgresql://...`` (or ``postgres://``): the PostgreSQL engine (``store.postgres``,
  asyncpg); the schema is the URL's ``search_path`` (``?search_path=shepherd``), else
  ``public``;
- any other ``scheme://``: a ``ConfigError`` naming ``database``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from shepherd.store.errors import ConfigError

if TYPE_CHECKING:  # the engines (sqlite3, the integrity check) load when a store opens;
    # the config imports this module for is_postgres / database_path alone
    from shepherd.store.protocol import Store
    from shepherd.store.sqlite.integrity import Check

__all__ = [
    "Check",
    "check_backup",
    "database_path",
    "diagnose",
    "is_postgres",
    "open_store",
    "restore_backup",
]

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")
_SQLITE = "sqlite:///"


def is_postgres(database: str) -> bool:
    """Whether ``database`` names a PostgreSQL database (a ``postgresql://`` URL)."""
    m = _URL.match(database)
    return m is not None and m["scheme"].lower() in ("postgresql", "postgres")


def database_path(database: str) -> str:
    """The SQLite file a database string names; a ConfigError for any other engine
    (a PostgreSQL URL: the tools that work on a file do not apply to it)."""
    if database.startswith(_SQLITE):
        path = database[len(_SQLITE) :]
        if not path:
            raise ConfigError("sqlite:/// URL without a file path", field="database")
        return path
    m = _URL.match(database)
    if m is None:
        return database
    scheme = m["scheme"].lower()
    if scheme in ("postgresql", "postgres"):
        raise ConfigError(
            "this works on a SQLite file; the database is a PostgreSQL URL", field="database"
        )
    raise ConfigError(
        f"unknown database scheme {scheme!r}: expected a file path, a sqlite:/// URL"
        " or a postgresql:// URL",
        field="database",
    )


async def open_store(
    database: str,
    *,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    busy_timeout: float = 5.0,
    create: bool = True,
    check: Check = "full",
    node: str = "",
) -> Store:
    """Open (create, migrate) the database ``database`` names, after its integrity
    ``check`` (``full``, ``auto``: full up to 256 MiB, ``bounded``, ``none``); the
    store's ``statistics()["start_check"]`` says which check ran and how long it took.
    A PostgreSQL URL opens ``store.postgres`` (``check`` and ``synchronous`` are the
    server's business there; ``node`` names every connection for the rescue)."""
    if is_postgres(database):
        from shepherd.store.postgres.engine import PgStore  # asyncpg: only when opening

        return await PgStore.open(database, create=create, node=node)
    path = database_path(database)
    if check == "none":
        import logging

        logging.getLogger("shepherd.store").warning(
            "%s: opened without an integrity check (start_check = off): a damaged page"
            " is found only when a query reads it",
            path,
        )
    from shepherd.store.sqlite.engine import SqliteStore  # aiosqlite: only when opening

    return await SqliteStore.open(
        path, synchronous=synchronous, busy_timeout=busy_timeout, create=create, check=check
    )


def diagnose(database: str) -> dict[str, Any]:
    """What ``shepherd doctor`` reports of the database: the file, its schema, a full
    integrity check per table, the latest runtime instance (``store.sqlite.integrity``)."""
    from shepherd.store.sqlite import integrity

    return integrity.diagnose(database_path(database))


def check_backup(path: str) -> int:
    """A full integrity check of a backup file; its schema version (``DatabaseCorrupt``
    when damaged or foreign)."""
    from shepherd.store.sqlite import backup as _backup  # not at import: aiosqlite

    return _backup.check_backup(path)


def restore_backup(
    backup: str, database: str, *, progress: Callable[[int, int], None] | None = None
) -> int:
    """Check ``backup`` in full, then put it in place of ``database`` atomically; the
    schema version restored. The caller holds the database's lock."""
    from shepherd.store.sqlite import backup as _backup

    return _backup.restore_file(backup, database_path(database), progress=progress)
