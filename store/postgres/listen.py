"""Wake-ups from other writers: LISTEN on the schema's channel over a dedicated
connection (``Listener``), so an enqueue from any node, or a plain SQL ``INSERT INTO
dispatches`` by another application, wakes every node within milliseconds.

- The triggers of ``store.postgres.schema`` NOTIFY ``channel_of(schema)`` once per
  statement: ``d<lowest seq>`` when rows became queued, ``c`` when a cancel was asked,
  ``j`` when jobs were added, removed or redefined, ``a`` approvals, ``A`` agents,
  ``g`` task groups, ``p`` pauses (what a change made through the CLI, another node's
  REST API or plain SQL must tell every node). A notification is delivered at its
  transaction's commit, so what it names is visible to the read it causes.
- ``wakeups()`` yields the flags waiting (merged: one string per pass of the consumer,
  the ingest socket's alphabet, ``actors.ingest.merge_wakes``).
- Late seqs: with several writers, seqs commit out of order, so a reader that has
  seen seq 11 may later see seq 10 commit. Every such commit is notified after the
  reader's snapshot (the listener LISTENs before the first read), so ``floor`` lowers
  the next read's ``after_seq`` to the lowest seq notified; it costs the queued rows
  of that short range, which the caller already holds (and skips).
- A dropped connection (server restart, ``pg_terminate_backend``, a network cut seen by
  the ping) is reconnected with a growing backoff; notifications sent meanwhile are
  lost, so ``wakeups`` yields ``dc`` at once and the next ``floor`` reaches
  ``LOOKBACK`` seqs behind (a bounded catch-up: a full re-read would hold the whole
  queue in memory). What remains: a dispatch whose seq was taken more than
  ``LOOKBACK`` seqs earlier by a transaction that committed while the listener was
  down waits for the dispatcher's window to reach it, or for the next start.
- A connection pooler in transaction mode cannot carry LISTEN: the listener's own
  connection is checked (``opening._check_pooler``) and refused with a ``ConfigError``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import asyncpg

from shepherd.store.errors import ConfigError
from shepherd.store.postgres.codes import LOST
from shepherd.store.postgres.opening import _check_pooler, connect, redact

__all__ = ["LOOKBACK", "PING_EVERY", "Listener", "channel_of"]

log = logging.getLogger("shepherd.store")

LOOKBACK = 10_000  # seqs re-read behind the high-water mark after a reconnect
PING_EVERY = 10.0  # seconds without a notification before the connection is probed
_PING_TIMEOUT = 5.0
_BACKOFF = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


def channel_of(schema: str) -> str:
    """The NOTIFY channel of ``schema`` (as the trigger names it: at most 63 bytes)."""
    return ("shepherd_" + schema)[:63]


class Listener:
    """One LISTEN connection of a ``PgStore``; started on first use (``ensure``)."""

    def __init__(self, dsn: str, schema: str, backend: str = "") -> None:
        self.channel = channel_of(schema)
        self._dsn = dsn
        # named as the node's other connections, so a rescue ends it with them (and
        # it reconnects: a LISTEN carries no outcome to fence)
        self._settings = {"application_name": backend} if backend else None
        self._conn: asyncpg.Connection | None = None
        self._start_lock = anyio.Lock()
        self._late: int | None = None  # the lowest seq notified since the last floor
        self._lost = False  # reconnected: what was sent meanwhile is unknown
        self._flags: set[str] = set()
        self._ready = anyio.Event()
        self._closed = False
        self._reconnecting = False  # ``wakeups`` reconnects; ``ensure`` leaves it to it
        self.notifications = 0
        self.reconnects = 0

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> None:
        """Connect and LISTEN, unless already done (before a read that ``floor`` serves)."""
        if self._conn is not None or self._closed or self._reconnecting:
            return
        async with self._start_lock:
            if self._conn is None and not self._closed and not self._reconnecting:
                self._conn = await self._connect()

    async def _connect(self) -> asyncpg.Connection:
        conn = await connect(self._dsn, server_settings=self._settings)
        try:
            await _check_pooler(conn, self._dsn)
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_terminate)
        return conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        digits = payload[1:]
        if payload[:1] == "d" and digits.isdigit():
            seq = int(digits)
            self._late = seq if self._late is None else min(self._late, seq)
            self._flags.add("d")
        else:  # flag letters ('j', 'a', 'A', 'g', 'p', 'c', or several at once)
            self._flags.update(payload or "-")
        self._ready.set()

    def _on_terminate(self, _conn: object) -> None:
        self._ready.set()

    def floor(self, after_seq: int) -> int:
        """The ``after_seq`` a read of the queued dispatches past ``after_seq`` must use:
        lower when a seq at or below it was notified since the last read, ``LOOKBACK``
        behind when notifications may have been lost (not listening, or reconnected)."""
        if self._lost or not self.listening:
            self._lost, self._late = False, None
            return max(0, after_seq - LOOKBACK)
        late, self._late = self._late, None
        return min(after_seq, late - 1) if late is not None else after_seq

    async def wakeups(self) -> AsyncIterator[str]:
        """The flags notified, merged per pass (``dc`` after a reconnect); forever. A
        server that does not answer is retried here (a pooler is refused at once)."""
        try:
            await self.ensure()
        except ConfigError:
            raise
        except Exception as exc:  # the server down at start: the loop below reconnects
            log.warning("LISTEN on %s failed (%s): retrying", redact(self._dsn), exc)
        while not self._closed:
            if not self._flags and self.listening:
                with anyio.move_on_after(PING_EVERY):
                    await self._ready.wait()
                self._ready = anyio.Event()
            if self._closed:
                return
            if not await self._alive():
                await self._reconnect()
            if self._flags:
                flags = "".join(sorted(self._flags))
                self._flags.clear()
                yield flags

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        if self._flags:
            return True
        try:
            with anyio.fail_after(_PING_TIMEOUT):
                await conn.fetchval("SELECT 1")
        except (TimeoutError, asyncpg.PostgresError, *LOST):
            return False
        return True

    async def _reconnect(self) -> None:
        old, self._conn = self._conn, None
        if old is not None:
            old.terminate()
        log.warning("lost the LISTEN connection to %s: reconnecting", redact(self._dsn))
        self._reconnecting = True
        try:
            await self._connect_again()
        finally:
            self._reconnecting = False

    async def _connect_again(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                conn = await self._connect()
            except ConfigError:
                raise
            except Exception as exc:  # the server still down: back off, try again
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                log.debug("LISTEN reconnect failed (%s); again in %gs", exc, delay)
                attempt += 1
                await anyio.sleep(delay)
                continue
            if self._closed:  # closed while connecting
                conn.terminate()
                return
            self._conn = conn
            self._lost = True
            self.reconnects += 1
            self._flags.update("dc")
            log.warning("LISTEN connection to %s restored", redact(self._dsn))
            return

    async def close(self) -> None:
        self._closed = True
        self._ready.set()
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await conn.close(timeout=2)
                except (asyncpg.PostgresError, TimeoutError, *LOST):
                    conn.terminate()
