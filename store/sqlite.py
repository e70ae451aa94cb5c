"""The SQLite backend: one file in WAL mode, a writer connection and a reader connection.

- ``apply(ops)`` runs a batch of write ops in ONE transaction on the writer's thread
  (one thread hop, one commit): this is the group commit the store-writer actor feeds.
- ``read(fn, ...)`` runs a query function from ``store.queries`` on the reader.
- ``synchronous``: ``NORMAL`` (default) survives any process crash, SIGKILL included;
  the last transactions may be lost on power failure or an OS crash. ``FULL`` fsyncs
  the WAL on every commit and survives those too, at a cost in commit rate.
- Driver errors are translated here into ``store.errors`` classes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from store import queries
from store.errors import (
    DatabaseCorrupt,
    DatabaseLocked,
    DiskFull,
    ReadOnly,
    StoreError,
)
from store.ops import WriteOp, apply_op
from store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore", "translate"]

T = TypeVar("T")
Synchronous = Literal["NORMAL", "FULL"]


def translate(exc: BaseException, path: str) -> StoreError:
    """Map a sqlite3 exception to the project's error classes."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return DatabaseLocked(f"{path}: database is locked by another writer ({exc})")
    if "full" in text:
        return DiskFull(f"{path}: disk is full ({exc})")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return ReadOnly(f"{path}: cannot write the database or its directory ({exc})")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return DatabaseCorrupt(f"{path}: not a shepherd database or damaged ({exc})")
    return StoreError(f"{path}: {exc}")


def _apply_batch(conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[Any]:
    """Runs on the writer thread: all ops in one transaction, one SAVEPOINT each."""
    results: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        single = len(ops) == 1
        for op in ops:
            if single:
                results.append(apply_op(conn, op))
                continue
            conn.execute("SAVEPOINT op")
            try:
                results.append(apply_op(conn, op))
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO op")
                results.append(StoreError(str(exc)))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


class SqliteStore:
    def __init__(
        self,
        path: str,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        synchronous: Synchronous,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer = writer
        self._reader = reader
        self._maintenance: aiosqlite.Connection | None = None
        self.commits = 0
        self.ops_applied = 0
        self.checkpoints = 0

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        create: bool = True,
    ) -> SqliteStore:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        p = str(path)
        # two stat calls on open, not on a hot path
        if not create and not Path(p).exists():  # noqa: ASYNC240
            raise StoreError(f"{p}: no such database")
        if p != ":memory:":
            parent = Path(p).resolve().parent  # noqa: ASYNC240
            if not parent.is_dir():
                raise ReadOnly(f"{p}: directory {parent} does not exist")
        writer = reader = None
        try:
            writer = await aiosqlite.connect(
                p, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            await _on_thread(writer, _prepare_writer, synchronous, busy_timeout)
            reader = await aiosqlite.connect(
                p, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            await reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await reader.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            for c in (writer, reader):
                if c is not None:
                    await c.close()
            raise translate(exc, p) from None
        return cls(p, writer, reader, synchronous)

    async def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        """Apply ``ops`` in one transaction; per-op results (a StoreError for a failed op)."""
        try:
            results: list[Any] = await _on_thread(self._writer, _apply_batch, ops)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        self.commits += 1
        self.ops_applied += len(ops)
        return results

    async def apply_one(self, op: WriteOp) -> Any:
        result = (await self.apply([op]))[0]
        if isinstance(result, StoreError):
            raise result
        return result

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            result: T = await _on_thread(self._reader, fn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        return result

    async def checkpoint(self, mode: Literal["PASSIVE", "TRUNCATE"] = "PASSIVE") -> None:
        """PASSIVE runs on a connection (and thread) of its own, so the writer's commits
        never wait for the checkpoint's disk syncs; TRUNCATE (on close) uses the writer."""
        try:
            if mode == "TRUNCATE":
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return
            if self._maintenance is None:
                self._maintenance = await aiosqlite.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                await self._maintenance.execute("PRAGMA busy_timeout = 1000")
            await self._maintenance.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.checkpoints += 1
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    async def backup(self, target: str) -> None:
        async with aiosqlite.connect(target) as dst:
            await self._reader.backup(dst)

    async def close(self, *, checkpoint: bool = True) -> None:
        """Close both connections; the runtime checkpoints (TRUNCATE) on the way out,
        short-lived clients such as the CLI pass ``checkpoint=False``."""
        if checkpoint:
            try:
                await self.checkpoint("TRUNCATE")
            except StoreError:
                pass
        if self._maintenance is not None:
            await self._maintenance.close()
        await self._reader.close()
        await self._writer.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "synchronous": self.synchronous,
            "commits": self.commits,
            "ops_applied": self.ops_applied,
            "checkpoints": self.checkpoints,
        }

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path} {self.synchronous} commits={self.commits}>"

    # queries used everywhere, as thin async wrappers
    async def stats(self) -> dict[str, Any]:
        return await self.read(queries.stats)


async def _on_thread(
    conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run ``fn(sqlite3_connection, *args)`` on the connection's own thread: one hop for
    a whole batch of statements. aiosqlite's public API is one hop per statement; its
    ``_execute`` (stable for years) is the documented-by-source way to run a function."""
    result: T = await conn._execute(fn, conn._conn, *args, **kwargs)  # type: ignore[no-untyped-call]
    return result


def _prepare_writer(conn: sqlite3.Connection, synchronous: str, busy_timeout: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables > 0):
        raise sqlite3.DatabaseError("file is not a database: not a shepherd database")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() not in ("wal", "memory"):
        raise sqlite3.OperationalError(f"could not enable WAL (journal_mode={mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Checkpoints are the health monitor's job, off the writer's thread (see checkpoint());
    # this high threshold only bounds the WAL if that ever falls behind (~400 MB).
    conn.execute("PRAGMA wal_autocheckpoint = 100000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -32000")
    _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
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
