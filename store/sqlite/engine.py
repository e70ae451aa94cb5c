"""The SQLite engine (``store.protocol.Store``): one file in WAL mode, a writer
connection and a reader connection, each with its own thread. The module is long
because it implements every read of the protocol, one short method each.

- ``apply(ops)`` runs a batch of write ops in ONE transaction on the writer's thread
  (one thread hop, one commit): this is the group commit the store-writer actor feeds.
  A small group of the dispatch path commits on the event loop's thread instead, when
  no hop is in flight on the writer and the write lock is free (``store.sqlite.inline``).
- Typed reads run the functions of ``store.sqlite.queries`` (and ``messages``,
  ``deliveries``, ``runs``) on the reader. ``read(fn, ...)`` runs any such function:
  the engine's own tests and tools use it; actors and the runtime never do.
- ``synchronous``: ``NORMAL`` (default) survives any process crash, SIGKILL included;
  the last transactions may be lost on power failure or an OS crash. ``FULL`` fsyncs
  the WAL on every commit and survives those too, at a cost in commit rate.
- Driver errors become ``store.errors`` classes by result code (``store.sqlite.codes``).

It is longer than most because it carries one typed read per question of the protocol
(each a one-line hop to the reader), so the engine's whole surface is in one place.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, TypeVar

import aiosqlite
import anyio

from shepherd.store.cluster import EndGroups, NodeInfo, NodeLease, Rescue
from shepherd.store.errors import StoreError
from shepherd.store.models import (
    Dispatch,
)
from shepherd.store.ops import DeadLetterAlert, WriteOp
from shepherd.store.protocol import CheckpointMode, OrphanedProcess
from shepherd.store.shared.reads import EngineReads
from shepherd.store.sqlite import cluster as cluster_sql
from shepherd.store.sqlite import runs
from shepherd.store.sqlite import window as window_sql
from shepherd.store.sqlite.backup import Progress, copy_to
from shepherd.store.sqlite.batch import apply_batch, on_thread
from shepherd.store.sqlite.codes import translate
from shepherd.store.sqlite.files import Files, keep_wal
from shepherd.store.sqlite.inline import apply_here, no_wait, small, wait_again
from shepherd.store.sqlite.integrity import Check, CheckRan
from shepherd.store.sqlite.opening import check_file, check_path, connect, prepare_writer
from shepherd.store.sqlite.reader import READS

__all__ = ["SqliteStore", "Synchronous"]

log = logging.getLogger("shepherd.store")
T = TypeVar("T")
Synchronous = Literal["NORMAL", "FULL"]


class SqliteStore(EngineReads):
    sql = READS

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
        self._backup: aiosqlite.Connection | None = None  # opened by the first backup
        self._busy_timeout = 5.0  # set by open()
        self.commits = 0
        self.commits_inline = 0  # of ``commits``: on the loop's thread (``store.sqlite.inline``)
        self.ops_applied = 0
        # hops in flight on the writer's connection; ``_abandoned``: one was cancelled and
        # may still run there (its thread is first in, first out: the next hop that
        # comes back clears it). Either keeps commits off the loop's thread.
        self._hops = 0
        self._abandoned = False
        self.checkpoints = 0
        self._no_wait = False  # the writer's busy timeout is 0 (inline commits: ``apply_now``)
        self._wal = (0, 0)  # the WAL's frames and backfilled frames at the last checkpoint
        self.opened_check = CheckRan("none", "none", 0.0)  # set by open()
        # the file, its WAL and its WAL index as opened, checked before every write
        # transaction of the writer's connection (``check_files``, ``store.sqlite.files``)
        self._files = Files(path)

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
        anything is written (``store.sqlite.integrity``: ``full``, ``auto``, ``bounded``,
        ``none``); ``opened_check`` says which one ran and how long it took."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        p = str(path)
        check_path(p, create=create)
        writer = reader = None
        try:
            checked = await anyio.to_thread.run_sync(check_file, p, check, busy_timeout)
            writer = await connect(p, busy_timeout)
            await on_thread(writer, prepare_writer, synchronous, busy_timeout)
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
        store = cls(p, writer, reader, synchronous)
        store.opened_check = checked
        store._busy_timeout = busy_timeout
        return store

    async def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        """Apply ``ops`` in one transaction; per-op results (a StoreError for a failed op)."""
        results = self.apply_now(ops)
        if results is not None:
            return results
        try:  # large, FULL, or the write lock is held elsewhere: wait on the writer's thread
            results = await self._on_writer(self._checked_batch, ops)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        self.commits += 1
        self.ops_applied += len(ops)
        return results

    def apply_now(self, ops: Sequence[WriteOp]) -> list[Any] | None:
        """``apply`` on this thread, when ``ops`` are a small group of the dispatch path
        under ``synchronous = NORMAL``, no hop is in flight on the writer and the write
        lock is free (``store.sqlite.inline``); None (nothing written) otherwise."""
        if self.synchronous != "NORMAL" or self._hops or self._abandoned or not small(ops):
            return None
        self.check_files()
        conn = self._writer._conn
        try:
            if not self._no_wait:
                no_wait(conn)
                self._no_wait = True
            results = apply_here(conn, ops)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        if results is not None:
            self.commits_inline += 1
            self.commits += 1
            self.ops_applied += len(ops)
        return results

    def _checked_batch(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[Any]:
        """``apply_batch`` on the writer's thread, right after the files' check."""
        self.check_files()
        return apply_batch(conn, ops)

    def check_files(self) -> None:
        """Raise ``DatabaseReplaced`` when the file, its WAL or its WAL index is no
        longer the one this store opened (removed, or another file renamed over it):
        the connections keep the old inodes, so commits would go where no other process
        reads, or over another process's frames (``store.sqlite.files``). Run before
        every write transaction, every checkpoint and at every health tick."""
        self._files.check()

    async def apply_one(self, op: WriteOp) -> Any:
        result = (await self.apply([op]))[0]
        if isinstance(result, StoreError):
            raise result
        return result

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        self._hops += 1
        try:
            if self._no_wait:  # inline commits left it at 0: the thread waits as configured
                busy_ms = int(self._busy_timeout * 1000)
                result: T = await on_thread(self._writer, _waiting, busy_ms, fn, *args)
                self._no_wait = False
            else:
                result = await on_thread(self._writer, fn, *args)
        except Exception:
            self._abandoned = False  # it ran, and failed
            self._no_wait = False  # (``_waiting`` runs first)
            raise
        except BaseException:
            self._abandoned = True  # cancelled: it may still be running on the thread
            raise
        finally:
            self._hops -= 1
        self._abandoned = False
        return result

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            result: T = await on_thread(self._reader, fn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        return result

    async def checkpoint(self, mode: CheckpointMode = "PASSIVE") -> int:
        """PASSIVE runs on a connection (and thread) of its own, so the writer's commits
        never wait for the checkpoint's disk syncs; TRUNCATE (on close) uses the writer.
        Both hop through ``_on_thread``, so ``THREAD_WORK`` counts them. Returns the
        frames the WAL gained since the last call (0: nothing was committed since). A WAL
        shorter than it was has started over, which only a commit does: at least 1."""
        self.check_files()  # a stale WAL index would checkpoint the wrong frames
        try:
            if mode == "TRUNCATE":
                await self._on_writer(_wal_checkpoint, "TRUNCATE")
                self._wal = (0, 0)
                return 0
            if self._maintenance is None:
                self._maintenance = await connect(self.path, 1.0)
                await on_thread(self._maintenance, _set_busy_timeout, 1.0)
            done = await on_thread(self._maintenance, _wal_checkpoint, "PASSIVE")
            self.checkpoints += 1
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        log, last = done[0], self._wal[0]
        self._wal = done
        return log - last if log >= last else max(log, 1)

    async def backup(self, target: str, *, progress: Progress | None = None) -> int:
        """A consistent copy of the database at ``target``, written atomically, on a
        connection (and thread) of its own: one snapshot copied in steps while the
        writer keeps committing (``store.sqlite.backup``). Its size in bytes."""
        try:
            if self._backup is None:
                self._backup = await connect(self.path, self._busy_timeout)
                await on_thread(self._backup, _set_busy_timeout, self._busy_timeout)
            size: int = await on_thread(self._backup, copy_to, target, progress=progress)
        except sqlite3.Error as exc:
            raise translate(exc, target) from None
        return size

    async def close(self, *, checkpoint: bool = True) -> None:
        """Close both connections; the runtime checkpoints (TRUNCATE) on the way out,
        short-lived clients such as the CLI pass ``checkpoint=False``. When the files
        changed under the store, nothing checkpoints, SQLite's own checkpoint on the
        last close included (``files.keep_wal``): the WAL stays for the next open."""
        conns = [self._maintenance, self._backup, self._reader, self._writer]
        if self._files.changed():
            checkpoint = False
            for c in conns:
                if c is not None and not keep_wal(c._conn):
                    log.error("%s: could not keep the WAL as it is on close", self.path)
        if checkpoint:
            try:
                await self.checkpoint("TRUNCATE")
            except StoreError:
                pass
        for extra in (self._maintenance, self._backup):
            if extra is not None:
                await extra.close()
        await self._reader.close()
        await self._writer.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "synchronous": self.synchronous,
            "commits": self.commits,
            "commits_inline": self.commits_inline,
            "ops_applied": self.ops_applied,
            "checkpoints": self.checkpoints,
            "start_check": self.opened_check.describe(),
            "start_check_seconds": round(self.opened_check.seconds, 6),
        }

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path} {self.synchronous} commits={self.commits}>"

    # -- typed reads (store.protocol.Store) -------------------------------------------

    async def lead_scheduler(self, node: str) -> bool:
        """One runtime serves the file (its lock): it always leads."""
        return True

    async def scheduler_leader(self) -> str | None:
        return None

    async def wakeups(self) -> AsyncIterator[str]:
        """None: other processes wake this one through the ingest socket."""
        await anyio.sleep_forever()
        yield ""  # never reached: the generator only waits

    async def join_node(self, node: str, *, lease: float, host: str, pid: int) -> NodeLease:
        """A cluster of one (``store.sqlite.cluster``): always alive, epoch 0."""
        return NodeLease(node=node, epoch=0, lease=lease)

    async def renew_node(self, node: str, epoch: int, *, lease: float) -> NodeLease:
        return NodeLease(node=node, epoch=0, lease=lease)

    async def leave_node(self, node: str, epoch: int) -> None:
        """Nothing to record: the file's lock says who serves it."""

    async def rescue_nodes(
        self,
        *,
        rescuer: str,
        origin: str,
        alert: DeadLetterAlert | None = None,
        host: str = "",
        end_groups: EndGroups | None = None,
    ) -> list[Rescue]:
        """No other node: a dead runtime's runs are recovered when the next one starts."""
        return []

    async def nodes(self) -> list[NodeInfo]:
        return await self.read(cluster_sql.list_nodes)

    async def node_processes(self, node: str, *, host: str) -> list[OrphanedProcess]:
        """Every recorded process group: all runs of the file were this host's."""
        return await self.read(runs.orphaned_processes)

    @property
    def dashboard(self) -> Any:
        """This engine's dashboard queries (the module ``store.sqlite.dashboard``), each
        run with ``read``: the UI asks the engine it serves."""
        from shepherd.store.sqlite import dashboard

        return dashboard

    async def queued_ready(
        self,
        after: tuple[int, float, int] | None,
        *,
        now: float,
        limit: int,
        lane: tuple[int, int] | None = None,
    ) -> list[Dispatch]:
        return await self.read(window_sql.queued_ready, after, now=now, limit=limit, lane=lane)

    async def queued_later(self, after: tuple[float, int], *, limit: int) -> list[Dispatch]:
        return await self.read(window_sql.queued_later, after, limit=limit)

    async def newest_seq(self) -> int:
        return await self.read(window_sql.newest_seq)

    # @@engine-methods@@ (new protocol methods go above this line)


def _wal_checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int]:
    """The WAL's frames and how many of them are now in the database file
    (``PRAGMA wal_checkpoint``'s last two columns; -1, not in WAL mode, counts as 0)."""
    row = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return (max(0, int(row[1])), max(0, int(row[2]))) if row is not None else (0, 0)


def _waiting(conn: sqlite3.Connection, busy_ms: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn`` on the writer's thread after the busy timeout is set back (``wait_again``)."""
    wait_again(conn, busy_ms)
    return fn(conn, *args)


def _set_busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
