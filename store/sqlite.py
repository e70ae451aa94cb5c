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
import anyio

from shepherd.store import queries
from shepherd.store.activity import THREAD_WORK
from shepherd.store.errors import (
    ConfigError,
    DatabaseCorrupt,
    DatabaseLocked,
    DiskFull,
    ReadOnly,
    StoreError,
)
from shepherd.store.integrity import Check
from shepherd.store.opening import check_file, connect, prepare_writer
from shepherd.store.ops import WriteOp, apply_op

__all__ = ["SqliteStore", "translate"]

T = TypeVar("T")
Synchronous = Literal["NORMAL", "FULL"]


# Primary result codes (``sqlite_errorcode & 0xFF``) → the class and what it means.
_BY_CODE: dict[int, tuple[type[StoreError], str]] = {
    sqlite3.SQLITE_BUSY: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_LOCKED: (DatabaseLocked, "database is locked by another writer"),
    sqlite3.SQLITE_FULL: (DiskFull, "disk is full"),
    sqlite3.SQLITE_READONLY: (ReadOnly, "cannot write the database or its directory"),
    sqlite3.SQLITE_CANTOPEN: (ReadOnly, "cannot write the database or its directory"),
    sqlite3.SQLITE_PERM: (ReadOnly, "cannot write the database or its directory"),
    sqlite3.SQLITE_CORRUPT: (DatabaseCorrupt, "not a shepherd database or damaged"),
    sqlite3.SQLITE_NOTADB: (DatabaseCorrupt, "not a shepherd database or damaged"),
}

# After these SQLite may have rolled the whole transaction back on its own, or the file
# or connection cannot go on (sqlite.org/lang_transaction.html, "Response To Errors
# Within A Transaction"): the batch fails as a whole. Any other error fails one op.
_WHOLE_BATCH = frozenset(
    {
        sqlite3.SQLITE_ABORT,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
    }
)


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None and type(exc) is sqlite3.DatabaseError:
        # no code: raised by this module's own checks (a foreign file, a newer schema)
        return sqlite3.SQLITE_NOTADB
    return None if code is None else int(code) & 0xFF


def translate(exc: BaseException, path: str) -> StoreError:
    """Map a sqlite3 exception to the project's error classes, by its SQLite result
    code (``sqlite_errorcode``), never by the words of its message."""
    code = _primary_code(exc)
    kind = _BY_CODE.get(code) if code is not None else None
    if kind is None:
        return StoreError(f"{path}: {exc}")
    cls, what = kind
    name = getattr(exc, "sqlite_errorname", None)
    return cls(f"{path}: {what} ({exc}{f'; {name}' if name else ''})")


def _fails_batch(conn: sqlite3.Connection, exc: BaseException) -> bool:
    """Whether ``exc``, raised by one op, fails its whole batch."""
    if not isinstance(exc, Exception) or not conn.in_transaction:
        return True  # not an error of the op (interrupt, exit), or SQLite rolled back
    code = _primary_code(exc)
    return code is not None and code in _WHOLE_BATCH


def _op_error(exc: Exception) -> StoreError:
    """What the caller of a failed op gets (its own reply fails, no one else's)."""
    text = str(exc) if isinstance(exc, sqlite3.IntegrityError) else f"{type(exc).__name__}: {exc}"
    error = StoreError(text)
    error.__cause__ = exc
    return error


def _apply_batch(conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[Any]:
    """Runs on the writer thread: all ops in one transaction, one SAVEPOINT each.

    An op that raises (a constraint, a value SQLite cannot bind such as an int past 64
    bits, a bug in the op) is rolled back to its savepoint and its result is a
    ``StoreError``; the other ops commit. Only an error of the transaction itself
    (``_WHOLE_BATCH``) fails the batch. A batch of one needs no savepoint: a failed op
    rolls the transaction back and nothing is committed.
    """
    results: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        single = len(ops) == 1
        for op in ops:
            if not single:
                conn.execute("SAVEPOINT op")
            try:
                results.append(apply_op(conn, op))
            # Broad on purpose: the writer serves every actor, and one op's failure is
            # its caller's alone (cancellation cannot arrive on this thread).
            except Exception as exc:
                if _fails_batch(conn, exc):
                    raise
                conn.execute("ROLLBACK" if single else "ROLLBACK TO op")
                results.append(_op_error(exc))
                if single:
                    return results
            if not single:
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
        check: Check = "full",
    ) -> SqliteStore:
        """Open (create, migrate) the file. ``check``: the integrity check run before
        anything is written (``store.integrity``: ``full``, ``bounded``, ``none``)."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        p = str(path)
        # a few stat calls on open, not on a hot path
        if not create and not Path(p).exists():  # noqa: ASYNC240
            raise StoreError(f"{p}: no such database")
        if p != ":memory:":
            if Path(p).is_dir():  # noqa: ASYNC240
                raise ConfigError(f"{p} is a directory, not a database file", field="database")
            parent = Path(p).resolve().parent  # noqa: ASYNC240
            if not parent.is_dir():
                raise ReadOnly(f"{p}: directory {parent} does not exist")
        writer = reader = None
        try:
            await anyio.to_thread.run_sync(check_file, p, check, busy_timeout)
            writer = await connect(p, busy_timeout)
            await _on_thread(writer, prepare_writer, synchronous, busy_timeout)
            reader = await connect(p, busy_timeout)
            await reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await reader.execute("PRAGMA query_only = 1")
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                for c in (writer, reader):
                    if c is not None:
                        await c.close()
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, p) from None
            raise
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
    ``_execute`` (stable for years) is the documented-by-source way to run a function.

    ``THREAD_WORK`` counts the hop while it runs (a fake clock waits for it); a hop whose
    task is cancelled stays counted until a marker queued behind it has run."""
    THREAD_WORK.begin()
    try:
        result: T = await conn._execute(fn, conn._conn, *args, **kwargs)  # type: ignore[no-untyped-call]
    except Exception:
        THREAD_WORK.end()
        raise
    except BaseException:
        marker = THREAD_WORK.abandon(getattr(conn, "_thread", None))
        try:
            conn._tx.put_nowait((None, marker))
        except Exception:  # aiosqlite internals changed: count it done
            marker()
        raise
    THREAD_WORK.end()
    return result
