"""The nats actor: the event stream published to NATS, on Dispatch's task subjects.

Role: hold one NATS connection (nats-py) and publish each item of the event stream
(``(seq, kind, data)``, from the HTTP API's hub) as JSON on
``<prefix>.task.<dispatch_id>.<event>`` (``subject_of``: ``queued``, ``started``,
``completed``, ``failed``, ``timeout``, ``cancelled``, ``progress``...). It subscribes
before it connects and never waits on the publishers: the feed is a bounded buffer
whose overflow is counted (``feed_dropped``), and while the connection is down the
items are dropped and counted (``offline_dropped``), not queued without bound. nats-py
reconnects by itself; a first connect that fails is retried with a capped backoff
here, so a NATS server that is down never crashes the tree.

Inbox: none (it reads its feed). Sends: nothing inside the runtime. Restart type:
permanent. Timers: the connect backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors.primitives.clock import Clock
from shepherd.store.errors import ConfigError

__all__ = ["Feed", "NatsPublisher", "subject_of"]

log = logging.getLogger("shepherd.nats")

Item = tuple[int, str, dict[str, Any]]

# outcome of a run -> the task event (Dispatch: COMPLETED, FAILED, TIMEOUT, CANCELLED)
_OUTCOME = {
    "ok": "completed",
    "error": "failed",
    "crashed": "failed",
    "timeout": "timeout",
    "cancelled": "cancelled",
    "skipped": "skipped",
}
# a worker lease's event -> the task event (Dispatch: ASSIGNED, progress reports)
_LEASE = {"claimed": "assigned", "progress": "progress"}
_BATCH = 255  # items taken at once from the feed (after the one waited for)
_BAD = str.maketrans({".": "_", "*": "_", ">": "_", " ": "_", "\t": "_"})


def _token(value: Any) -> str:
    return str(value).translate(_BAD) or "_"


def subject_of(prefix: str, kind: str, data: dict[str, Any]) -> str | None:
    """The subject of one event (None: not published).

    ======================  ============================================
    dispatch                ``<p>.task.<id>.queued`` (or ``.awaiting_approval``)
    run_started             ``<p>.task.<id>.started``
    outcome                 ``<p>.task.<id>.completed | failed | timeout | cancelled |
                            skipped``
    slot                    ``<p>.task.<id>.skipped``, or ``<p>.job.<job>.skipped``
                            for a slot that never had a dispatch
    lease                   ``<p>.task.<id>.assigned | progress | lease_<event>``
                            (``<p>.run.<run_id>...`` when it names no dispatch)
    ======================  ============================================
    """
    if kind == "dispatch":
        event = "queued" if data.get("state") == "queued" else _token(data.get("state"))
    elif kind == "run_started":
        event = "started"
    elif kind == "outcome":
        event = _OUTCOME.get(str(data.get("outcome")), _token(data.get("outcome")))
    elif kind == "slot":
        event = "skipped"
        if data.get("dispatch_id") is None:
            return f"{prefix}.job.{_token(data.get('job'))}.skipped"
    elif kind == "lease":
        name = str(data.get("event"))
        event = _LEASE.get(name, f"lease_{_token(name)}")
        if data.get("dispatch_id") is None:
            if data.get("run_id") is None:
                return None
            return f"{prefix}.run.{_token(data['run_id'])}.{event}"
    else:
        return None
    dispatch_id = data.get("dispatch_id")
    if dispatch_id is None:
        return None
    return f"{prefix}.task.{_token(dispatch_id)}.{event}"


class Feed(Protocol):
    """What the actor reads: the hub's subscription (``runtime.http.events``)."""

    dropped: int

    async def next(self, timeout: float) -> Item | None: ...

    def receive_nowait(self) -> Item: ...


class NatsPublisher:
    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        source: Callable[[], AbstractAsyncContextManager[Feed]],
        clock: Clock,
        max_backoff: float = 10.0,
    ) -> None:
        self.url, self.prefix = url, prefix.rstrip(".")
        tokens = self.prefix.split(".")
        if not self.prefix or any(not t or _token(t) != t for t in tokens):
            raise ConfigError(
                f"expected dot-separated NATS subject tokens (no spaces or wildcards), got"
                f" {prefix!r}",
                field="http.nats.prefix",
            )
        self._source = source
        self._clock = clock
        self._max_backoff = max_backoff
        self._nc: Any = None
        self._feed: Feed | None = None
        self.published = 0
        self.offline_dropped = 0
        self.errors = 0
        self.connects = 0
        self.last_error: str | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with self._source() as feed:
            self._feed = feed
            task_status.started()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._connect)
                    await self._pump(feed)
                    tg.cancel_scope.cancel()
            finally:
                self._feed = None
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await self._close()

    async def _connect(self) -> None:
        import nats

        wait = 0.5
        while self._nc is None:
            try:
                self._nc = await nats.connect(
                    self.url,
                    name="shepherd",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    connect_timeout=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                    skip_subject_validation=True,  # the prefix is checked, the rest escaped
                )
            except Exception as exc:  # a server that is down: try again, never crash
                self._note(exc)
                await self._clock.sleep_until(self._clock.now() + wait)
                wait = min(wait * 2, self._max_backoff)
                continue
            self.connects += 1
            log.info("nats.connected url=%s prefix=%s", self.url, self.prefix)

    async def _pump(self, feed: Feed) -> None:
        while True:
            try:
                item = await feed.next(60.0)
            except anyio.EndOfStream:
                return
            if item is None:
                continue
            batch = [item]
            for _ in range(_BATCH):  # what else waits: published with one flush
                try:
                    batch.append(feed.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            await self._publish(batch)

    async def _publish(self, batch: list[Item]) -> None:
        nc = self._nc
        for seq, kind, data in batch:
            subject = subject_of(self.prefix, kind, data)
            if subject is None:
                continue
            if nc is None or not nc.is_connected:
                self.offline_dropped += 1
                continue
            try:  # no await suspends here while connected: one flush for the batch
                await nc.publish(subject, msgspec.json.encode({"seq": seq, **data}))
            except Exception as exc:  # buffer full while reconnecting, closed: counted
                self.offline_dropped += 1
                self._note(exc)
                continue
            self.published += 1

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.flush(timeout=0.5)
            except Exception:  # closing: what is unsent is lost, as on a crash
                pass
            await nc.close()

    def _note(self, exc: BaseException) -> None:
        self.errors += 1
        text = f"{type(exc).__name__}: {exc}"
        if text != self.last_error:
            log.warning("nats.error url=%s error=%s", self.url, text)
        self.last_error = text

    async def _on_error(self, exc: Exception) -> None:
        self._note(exc)

    async def _on_disconnect(self) -> None:
        log.warning("nats.disconnected url=%s", self.url)

    async def _on_reconnect(self) -> None:
        self.connects += 1
        log.info("nats.reconnected url=%s", self.url)

    def statistics(self) -> dict[str, Any]:
        nc = self._nc
        return {
            "connected": bool(nc is not None and nc.is_connected),
            "published": self.published,
            "offline_dropped": self.offline_dropped,
            "feed_dropped": self._feed.dropped if self._feed is not None else 0,
            "connects": self.connects,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<NatsPublisher {self.url} published={self.published}>"
