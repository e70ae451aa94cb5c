"""The PostgreSQL engine (``store.protocol.Store``), on asyncpg: a writer connection
for group commits and a small pool for reads. The module is long because it carries
one typed read per question of the protocol (each a one-line hop to a pooled
connection), so the engine's whole surface is in one place, as in ``store.sqlite``.

- ``apply(ops)`` runs a batch of write ops in ONE transaction on the writer connection
  (``store.postgres.batch``): the group commit the store-writer actor feeds. Callers
  take turns on it (a lock), as they take turns on SQLite's writer thread.
- Typed reads run the functions of this package's area modules on a pooled
  connection; ``read(fn, ...)`` runs any such function (tests and tools).
- Every await on the server counts in ``store.activity.THREAD_WORK``, so a fake clock
  waits for the answer.
- Driver errors become ``store.errors`` classes by SQLSTATE (``store.postgres.codes``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import asyncpg

from shepherd.store.activity import THREAD_WORK
from shepherd.store.cluster import EndGroups, NodeInfo, NodeLease, Rescue
from shepherd.store.errors import StoreError
from shepherd.store.models import (
    Dispatch,
)
from shepherd.store.ops import DeadLetterAlert, WriteOp
from shepherd.store.postgres import agents as agents_sql
from shepherd.store.postgres import approvals as approvals_sql
from shepherd.store.postgres import cluster as cluster_sql
from shepherd.store.postgres import (
    controls,
    deliveries,
    groups,
    messages,
    queries,
    runs,
    spawn,
    window,
)
from shepherd.store.postgres import metrics as metrics_sql
from shepherd.store.postgres import ops_table as _ops_table  # fills batch.APPLY
from shepherd.store.postgres.batch import Attempt, apply_batch
from shepherd.store.postgres.codes import LOST, connection_lost, translate
from shepherd.store.postgres.leader import Leadership, current_leader
from shepherd.store.postgres.listen import Listener
from shepherd.store.postgres.opening import POOL_MAX, Opened, connect, open_connections, redact
from shepherd.store.protocol import CheckpointMode, OrphanedProcess
from shepherd.store.shared.reads import EngineReads, ReadModules

__all__ = ["PgStore"]

T = TypeVar("T")
assert _ops_table.READY


class PgStore(EngineReads):
    engine = "postgresql"
    sql = ReadModules(
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

    def __init__(self, dsn: str, opened: Opened) -> None:
        self.dsn = dsn
        self.path = redact(dsn)  # what messages and `status` show: no password
        self.schema = opened.schema
        self.server_version = opened.server_version
        self._writer = opened.writer
        self._pool = opened.pool
        self.backend = opened.backend  # every connection's application_name ("": no node)
        self._lease = cluster_sql.LeaseLink(dsn, opened.backend)  # join / renew / leave
        self._write_lock = anyio.Lock()
        self._listener = Listener(dsn, opened.schema, opened.backend)  # wake-ups (``listen``)
        self.commits = 0
        self.ops_applied = 0
        self._closed = False
        self._leadership: Leadership | None = None  # the scheduler lock, once asked

    @classmethod
    async def open(
        cls, dsn: str, *, create: bool = True, migrate: bool = True, node: str = ""
    ) -> PgStore:
        """Connect, check the server (``opening``), create or migrate the schema; with
        ``node``, every connection names that node (``opening.backend_name``)."""
        opened = await open_connections(dsn, create=create, migrate_schema=migrate, node=node)
        return cls(dsn, opened)

    async def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        """Apply ``ops`` in one transaction; per-op results (a StoreError for a failed op)."""
        async with self._write_lock:
            THREAD_WORK.begin()
            try:
                results = await self._apply(ops)
            finally:
                THREAD_WORK.end()
        self.commits += 1
        self.ops_applied += len(ops)
        return results

    async def _apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        """``apply_batch`` on the writer connection. A connection found lost (a backend
        terminated, by a rescuing node or an administrator, while the writer was idle:
        the client learns it at the next statement) before the batch's COMMIT was sent
        took the transaction with it: the batch runs once more on a new connection. Lost
        after, the batch fails: whether it committed is unknown."""
        for again in (False, True):
            attempt = Attempt()
            try:
                if self._writer.is_closed():  # lost between batches: nothing was in flight
                    self._writer = await self._reconnect()
                return await apply_batch(self._writer, ops, attempt)
            except (asyncpg.PostgresError, *LOST) as exc:
                lost = connection_lost(exc)
                if lost and not self._writer.is_closed():
                    self._writer.terminate()  # unusable: reconnected below or next batch
                if lost and not attempt.committing and not again:
                    continue
                raise translate(exc, self.path) from None
            except BaseException:
                if not self._writer.is_closed() and self._writer.is_in_transaction():
                    self._writer.terminate()  # cancelled mid-batch: rolled back by the server
                raise
        raise AssertionError("unreachable")

    def check_files(self) -> None:
        """Nothing to check: the server owns its files."""

    def apply_now(self, ops: Sequence[WriteOp]) -> list[Any] | None:
        """Never here: every commit is a round trip to the server (None: ``apply`` it)."""
        return None

    async def _reconnect(self) -> asyncpg.Connection:
        """A new writer connection, named as the lost one (``backend``)."""
        named = {"application_name": self.backend} if self.backend else None
        return await connect(self.dsn, server_settings=named)

    async def apply_one(self, op: WriteOp) -> Any:
        result = (await self.apply([op]))[0]
        if isinstance(result, StoreError):
            raise result
        return result

    async def read(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(connection, *args, **kwargs)`` on a pooled connection. A read
        whose connection is lost under it (server restart, a terminated backend) runs
        again on the next one, until a fresh one: every pooled connection may have been
        ended at once (a rescue ends all of a node's backends). Reads change nothing,
        so the retry is safe."""
        THREAD_WORK.begin()
        try:
            tries = POOL_MAX + 1
            for attempt in range(1, tries + 1):
                try:
                    async with self._pool.acquire() as conn:
                        return await fn(conn, *args, **kwargs)
                except (asyncpg.PostgresError, *LOST) as exc:
                    if attempt == tries or not connection_lost(exc):
                        raise translate(exc, self.path) from None
            raise AssertionError("unreachable")
        finally:
            THREAD_WORK.end()

    async def checkpoint(self, mode: CheckpointMode = "PASSIVE") -> int:
        """PostgreSQL checkpoints on its own: nothing to do."""
        return 0

    async def backup(
        self, target: str, *, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """A consistent copy of this database's schema at ``target`` (``pg_dump``'s
        custom format, one snapshot), written atomically; its size in bytes."""
        from shepherd.store.postgres.backup import dump_to

        return await dump_to(self.dsn, self.schema, target, progress=progress)

    async def close(self, *, checkpoint: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._lease.close()
            await self._listener.close()
            if self._leadership is not None:
                await self._leadership.close()
            try:
                await self._pool.close()
            finally:
                await self._writer.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "path": self.path,
            "schema": self.schema,
            "server_version": self.server_version,
            "commits": self.commits,
            "ops_applied": self.ops_applied,
            "checkpoints": 0,
            "notifications": self._listener.notifications,
            "listen_reconnects": self._listener.reconnects,
            "start_check": "none (PostgreSQL checks its own pages)",
            "start_check_seconds": 0.0,
        }

    def __repr__(self) -> str:
        return f"<PgStore {self.path} schema={self.schema} commits={self.commits}>"

    # -- typed reads (store.protocol.Store) -------------------------------------------

    async def queued_since(
        self, after_seq: int, *, exclude_origin: str | None = None
    ) -> list[Dispatch]:
        await self._listener.ensure()  # LISTEN before the snapshot: a later commit is notified
        after = self._listener.floor(after_seq)  # lower when a seq committed late (``listen``)
        return await self.read(queries.queued_since, after, exclude_origin=exclude_origin)

    async def lead_scheduler(self, node: str) -> bool:
        """The scheduler lock, on a connection of its own (``store.postgres.leader``)."""
        if self._leadership is None:
            self._leadership = Leadership(self.dsn, self.schema, self.backend or None)
        THREAD_WORK.begin()
        try:
            return await self._leadership.lead(node)
        finally:
            THREAD_WORK.end()

    async def scheduler_leader(self) -> str | None:
        return await self.read(current_leader, self.schema)

    async def wakeups(self) -> AsyncIterator[str]:
        async for flags in self._listener.wakeups():
            yield flags

    async def _on_lease(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        THREAD_WORK.begin()
        try:
            return await self._lease.run(fn, *args)
        except (asyncpg.PostgresError, *LOST) as exc:
            raise translate(exc, self.path) from None
        finally:
            THREAD_WORK.end()

    async def join_node(self, node: str, *, lease: float, host: str, pid: int) -> NodeLease:
        return await self._on_lease(cluster_sql.join, node, lease, host, pid, self.backend)

    async def renew_node(self, node: str, epoch: int, *, lease: float) -> NodeLease:
        return await self._on_lease(cluster_sql.renew, node, epoch, lease)

    async def leave_node(self, node: str, epoch: int) -> None:
        await self._on_lease(cluster_sql.leave, node, epoch)

    async def rescue_nodes(
        self,
        *,
        rescuer: str,
        origin: str,
        alert: DeadLetterAlert | None = None,
        host: str = "",
        end_groups: EndGroups | None = None,
    ) -> list[Rescue]:
        return await self.read(cluster_sql.rescue, rescuer, origin, alert, host, end_groups)

    async def nodes(self) -> list[NodeInfo]:
        return await self.read(cluster_sql.list_nodes, self.schema)

    async def node_processes(self, node: str, *, host: str) -> list[OrphanedProcess]:
        return await self.read(cluster_sql.orphaned_processes, node, host)

    @property
    def dashboard(self) -> Any:
        """This engine's dashboard queries (the module ``store.postgres.dashboard``), each
        run with ``read``: the UI asks the engine it serves."""
        from shepherd.store.postgres import dashboard

        return dashboard

    async def queued_ready(
        self,
        after: tuple[int, float, int] | None,
        *,
        now: float,
        limit: int,
        lane: tuple[int, int] | None = None,
    ) -> list[Dispatch]:
        return await self.read(window.queued_ready, after, now=now, limit=limit, lane=lane)

    async def queued_later(self, after: tuple[float, int], *, limit: int) -> list[Dispatch]:
        return await self.read(window.queued_later, after, limit=limit)

    async def newest_seq(self) -> int:
        await self._listener.ensure()  # before the dispatcher's first snapshot (``listen``)
        return await self.read(window.newest_seq)

    # @@engine-methods@@ (new protocol methods go above this line)
