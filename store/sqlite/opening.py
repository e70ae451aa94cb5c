"""Opening a database file: connect, refuse a foreign file, check integrity before
anything writes, set the connection up, migrate.

``check_file`` runs first, on a read-only connection in a worker thread;
``prepare_writer`` then runs on the writer connection's thread, before the store exists.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from shepherd.store.errors import ConfigError, ReadOnly, StoreError
from shepherd.store.sqlite.integrity import Check, CheckRan, verify
from shepherd.store.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:  # the engine's connections; the loop-free reader (reader.py) has none
    import aiosqlite

__all__ = ["check_file", "check_path", "connect", "migrate", "prepare_writer", "schema_state"]


def check_path(path: str, *, create: bool) -> None:
    """Refuse what cannot be a database file before anything connects: a missing file
    (unless ``create``), a directory, a parent directory that does not exist, a file
    with more than one name (hard links: SQLite keeps the WAL and its index beside the
    name it opens, so two names of one file are two WALs, and commits through one are
    lost or damage the file)."""
    # a few stat calls on open, not on a hot path
    if not create and not Path(path).exists():
        raise StoreError(f"{path}: no such database")
    if path != ":memory:":
        if Path(path).is_dir():
            raise ConfigError(f"{path} is a directory, not a database file", field="database")
        with contextlib.suppress(FileNotFoundError):
            if (links := os.stat(path).st_nlink) > 1:
                raise ConfigError(
                    f"{path} has {links} names (hard links): SQLite keeps its WAL beside the"
                    " name it opens, so every name would write a WAL of its own and damage"
                    " the file; keep one name (remove the other links; a symlink is safe)",
                    field="database",
                )
        parent = Path(path).resolve().parent
        if not parent.is_dir():
            raise ReadOnly(f"{path}: directory {parent} does not exist")


async def connect(path: str, busy_timeout: float) -> aiosqlite.Connection:
    import aiosqlite
    import anyio

    conn = aiosqlite.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        await conn
    except BaseException:
        # A failed connect stops aiosqlite's worker thread without waiting for it; the
        # thread then reports into an event loop that may be closed by then. Wait here.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(conn._thread.join, 5.0)
        raise
    return conn


def check_file(path: str, check: Check, busy_timeout: float) -> CheckRan:
    """Refuse a foreign or damaged file before a connection that can write opens it:
    closing the last read-write connection checkpoints the WAL into the file, so the
    check runs on a read-only connection of its own. A new (absent or empty) file has
    nothing to check. Which check ran, and how long it took."""
    if check == "none" or path == ":memory:" or not os.path.isfile(path):
        return CheckRan(check, "none", 0.0)
    if os.path.getsize(path) == 0:
        return CheckRan(check, "none", 0.0)
    started = time.perf_counter()
    conn = sqlite3.connect(
        f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=busy_timeout
    )
    try:
        _refuse_foreign(conn)
        ran = verify(conn, check, path)
    finally:
        conn.close()
    return CheckRan(check, ran, time.perf_counter() - started)


def _refuse_foreign(conn: sqlite3.Connection) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables > 0):
        raise sqlite3.DatabaseError("file is not a database: not a shepherd database")


def prepare_writer(conn: sqlite3.Connection, synchronous: str, busy_timeout: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    _refuse_foreign(conn)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() not in ("wal", "memory"):
        raise sqlite3.OperationalError(f"could not enable WAL (journal_mode={mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Checkpoints are the pruner's job, off the writer's thread (see checkpoint());
    # this high threshold only bounds the WAL if that ever falls behind (~400 MB).
    conn.execute("PRAGMA wal_autocheckpoint = 100000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    # 4 MB: the hot pages are the heads of the indexes; the OS page cache holds the rest.
    # (At 32 MB the cache grew the RSS by ~1 MiB per 1,000 runs until it was full.)
    conn.execute("PRAGMA cache_size = -4000")
    migrate(conn)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to ``SCHEMA_VERSION``. A file already there is not written to
    (opening a database for a query must not add a WAL frame)."""
    current, app_id = schema_state(conn)
    if current > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"file is not a database this version understands: schema {current} is newer"
            f" than {SCHEMA_VERSION}"
        )
    if (current, app_id) == (SCHEMA_VERSION, APPLICATION_ID):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0] or 0)
        if current > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"file is not a database this version understands: schema {current} is newer"
                f" than {SCHEMA_VERSION}"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def schema_state(conn: sqlite3.Connection) -> tuple[int, int]:
    """(schema version, application id) of the file, read without a write lock."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0, app_id
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0), app_id
