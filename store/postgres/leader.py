"""The scheduler's leadership on PostgreSQL: one leader per shepherd schema, cluster-wide.

The leader is whoever holds the session advisory lock
``advisory_key(schema, 'scheduler')`` (``store.postgres.opening``). It is taken with
``pg_try_advisory_lock`` on a connection of its own, never the writer or the pool: a
session lock lives exactly as long as its server backend, so

- a node that dies (its process killed, its host gone) drops its connection and the
  lock with it; the server frees it as soon as it sees the socket close;
- a node declared dead while still alive (paused past its lease) has its backends
  terminated by the rescue (``store.postgres`` cluster code), which frees the lock too;
- the holder learns it lost the lock only by using that connection: ``Leadership.lead``
  checks it (one ``SELECT 1``) each time it is asked, so a node never fires on the
  belief that it still leads after its backend is gone.

Followers ask again every second or so (the scheduler actor's ``leader_poll``), so a
dead leader is replaced within its lease plus that poll. Two leaders may still overlap
for a moment (the old one has not used its connection since it was terminated): the
``dispatches_slot`` unique index keeps a slot to one dispatch regardless.

The connection's ``application_name`` is the node's backend name (the one every
connection of its store carries, so a rescue that terminates the node's backends ends
this one too), else ``shepherd-leader:<node>``: ``current_leader`` reads the node that
holds the lock from it (``pg_locks`` joined to ``pg_stat_activity``).
"""

from __future__ import annotations

import contextlib
import logging

import asyncpg

from shepherd.store.errors import StoreError
from shepherd.store.postgres.codes import LOST
from shepherd.store.postgres.opening import advisory_key, connect

__all__ = [
    "APP_PREFIX",
    "Leadership",
    "application_name",
    "current_leader",
    "lock_parts",
    "node_of",
]

log = logging.getLogger("shepherd.store.leader")

APP_PREFIX = "shepherd-leader:"
_NAME_MAX = 63  # NAMEDATALEN - 1: the server cuts application_name there
_TIMEOUT = 5.0  # seconds a leadership query may take before the lock counts as lost
# a lost connection (``codes.LOST``: a terminated backend can leave the driver out of step)
_ERRORS = (asyncpg.PostgresError, *LOST, TimeoutError, StoreError)


def application_name(node: str) -> str:
    """The leader connection's ``application_name`` for ``node``."""
    return (APP_PREFIX + node).encode()[:_NAME_MAX].decode(errors="ignore")


def lock_parts(schema: str) -> str:
    """SQL of ``(classid, objid)`` as ``pg_locks`` shows the scheduler's bigint key."""
    key = advisory_key(schema, "scheduler")
    return f"((({key}) >> 32) & 4294967295)::oid, (({key}) & 4294967295)::oid"


class Leadership:
    """The scheduler lock of ``schema`` for one node, on a dedicated connection."""

    def __init__(self, dsn: str, schema: str, backend: str | None = None) -> None:
        self._dsn = dsn
        self._schema = schema
        self._backend = backend  # the node's application_name, when its store has one
        self._conn: asyncpg.Connection | None = None
        self._node = ""
        self.held = False
        self.changes = 0  # times the leadership was taken or lost (tests, statistics)

    async def lead(self, node: str) -> bool:
        """Whether ``node`` holds the lock now: kept when held (its connection still
        answers), taken when free; any failure counts as not leading."""
        try:
            if self._conn is None or self._conn.is_closed() or node != self._node:
                await self._reset()
                self._node = node
                self._conn = await connect(
                    self._dsn,
                    timeout=_TIMEOUT,
                    server_settings={"application_name": self._backend or application_name(node)},
                )
            if self.held:
                await self._conn.fetchval("SELECT 1", timeout=_TIMEOUT)
                return True
            key = advisory_key(self._schema, "scheduler")
            got = await self._conn.fetchval(f"SELECT pg_try_advisory_lock({key})", timeout=_TIMEOUT)
        except _ERRORS as exc:
            if self.held:
                log.warning("scheduler leadership lost (%s: %s)", type(exc).__name__, exc)
            await self._reset()
            return False
        if got:
            self.held = True
            self.changes += 1
            log.info("scheduler leadership taken by %s", node)
        return bool(got)

    async def _reset(self) -> None:
        if self.held:
            self.changes += 1
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # no round trip: the backend may be gone, the lock with it

    async def close(self) -> None:
        """Give the lock up (closing the connection frees it)."""
        conn, self._conn = self._conn, None
        self.held = False
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*_ERRORS):
                await conn.close(timeout=_TIMEOUT)
            if not conn.is_closed():
                conn.terminate()


async def current_leader(conn: asyncpg.Connection, schema: str) -> str | None:
    """The node that holds ``schema``'s scheduler lock (its ``application_name`` after
    the prefix, possibly cut short), or None when no one does."""
    name = await conn.fetchval(
        f"""SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND (l.classid, l.objid) = ({lock_parts(schema)})"""
    )
    return None if name is None else node_of(str(name))


def node_of(name: str) -> str:
    """The node in an ``application_name``: ``shepherd <hash> <node>`` (the cluster's
    backend name) or ``shepherd-leader:<node>``; either may be cut short."""
    if name.startswith(APP_PREFIX):
        return name.removeprefix(APP_PREFIX)
    parts = name.split(" ", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "shepherd" else name
