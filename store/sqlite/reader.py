"""The SQLite engine's reads without an event loop, for a tool that reads once and exits
(``shepherd status``: aiosqlite, anyio and asyncio would cost it more than its reads);
opened ``writable``, also its writes (``apply_one``: the engine's ``apply_batch``, one
transaction), for a tool that writes once (``shepherd enqueue`` with no daemon).

``SqliteReader.open`` opens the file as ``SqliteStore.open`` opens its writer (the same
checks: ``opening.check_path``, ``check_file``'s foreign-file and integrity check,
``prepare_writer``'s WAL and migrations), on one plain ``sqlite3`` connection, then
makes it read-only. Its typed reads are the engine's own (``EngineReads`` over
``READS``, the area modules ``SqliteStore`` reads with), and driver errors are
translated as the engine translates them. ``read`` calls the function on the
connection in the calling thread, so awaiting a read never suspends: ``run_sync``
drives a coroutine made only of such reads to its end without an event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from shepherd.store.cluster import NodeInfo
from shepherd.store.errors import StoreError
from shepherd.store.ops import WriteOp
from shepherd.store.shared.reads import EngineReads, ReadModules
from shepherd.store.sqlite import agents as agents_sql
from shepherd.store.sqlite import approvals as approvals_sql
from shepherd.store.sqlite import cluster as cluster_sql
from shepherd.store.sqlite import controls, deliveries, groups, messages, queries, runs, spawn
from shepherd.store.sqlite import metrics as metrics_sql
from shepherd.store.sqlite.codes import translate
from shepherd.store.sqlite.integrity import Check, CheckRan
from shepherd.store.sqlite.opening import check_file, check_path, prepare_writer

__all__ = ["READS", "SqliteReader", "run_sync"]

T = TypeVar("T")

READS = ReadModules(
    queries,
    controls,
    runs,
    agents_sql,
    messages,
    deliveries,
    spawn,
    groups,
    approvals_sql,
    metrics_sql,
)


class SqliteReader(EngineReads):
    """The typed reads of ``SqliteStore`` on one connection, in the caller's thread."""

    sql = READS

    def __init__(
        self, path: str, conn: sqlite3.Connection, synchronous: str, checked: CheckRan
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.opened_check = checked
        self._conn = conn

    @classmethod
    def open(
        cls,
        path: str,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 5.0,
        check: Check = "full",
        writable: bool = False,
    ) -> SqliteReader:
        """The existing file ``path``, checked and migrated as ``SqliteStore.open``
        (``create=False``) does it; read-only unless ``writable``."""
        check_path(path, create=False)
        conn: sqlite3.Connection | None = None
        try:
            checked = check_file(path, check, busy_timeout)
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            prepare_writer(conn, synchronous, busy_timeout)
            if not writable:
                conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise translate(exc, path) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        return cls(path, conn, synchronous, checked)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self._conn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def apply_one(self, op: WriteOp) -> Any:
        """``op`` alone in a transaction, as ``SqliteStore.apply_one``: its result, or its
        StoreError raised (a reader opened ``writable`` only)."""
        from shepherd.store.sqlite.batch import apply_batch

        try:
            [result] = apply_batch(self._conn, [op])
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        if isinstance(result, StoreError):
            raise result
        return result

    async def nodes(self) -> list[NodeInfo]:
        return await self.read(cluster_sql.list_nodes)

    async def scheduler_leader(self) -> str | None:
        return None  # as SqliteStore: the file's one runtime leads

    def statistics(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "synchronous": self.synchronous,
            "start_check": self.opened_check.describe(),
            "start_check_seconds": round(self.opened_check.seconds, 6),
        }

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SqliteReader {self.path}>"


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """The result of ``coro``, which must finish without suspending (it awaits only
    ``SqliteReader`` reads); a RuntimeError if it suspends."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError(f"{coro!r} suspended: it needs an event loop")
