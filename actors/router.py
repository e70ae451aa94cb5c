"""The message router: inbox expiry and announce delivery to sinks, with durable retries.

Role: owns the ``messages`` and ``deliveries`` tables' lifecycle (ops and queries in
``store/messages.py`` and ``store/deliveries.py``). It sweeps expired inbox messages;
turns run outcomes into announce deliveries (``actors/delivery.py`` decides whether and
what); takes explicit deliveries (watchdog alerts, ``Runtime.deliver``); and sends each
one to its sink — a Python callback registered by the embedding gateway, a webhook
(HTTP POST, JSON), or the gateway — retrying failures with backoff until
``max_attempts``, then ``failed``.
A delivery never changes its run's outcome. Sending, inserting and acknowledging are
separate steps, so a crash between them re-sends (at-least-once delivery).
Inbox: ``RouterMsg``. Sends: write ops to the store writer, HTTP requests, callbacks,
``Attempted`` to itself from its send tasks.
Restart type: permanent; on (re)start it reloads every pending delivery from the store.
Timers: the earliest due delivery; the expiry sweep every ``expire_interval``.

The deciding and committing half is a mixin, ``actors/router_commit.py``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, assert_never

import anyio
import httpx
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from shepherd.actors.clock import Clock
from shepherd.actors.delivery import DeliveryConfig, pick_sink
from shepherd.actors.executors.gateway import GatewayConfig, HttpClient, http_error_text
from shepherd.actors.mailbox import Address, Mailbox, Reply, receive_by
from shepherd.actors.messages import OutcomeEvent
from shepherd.actors.router_commit import RouterCommitMixin
from shepherd.actors.writer import StoreMsg
from shepherd.store.errors import StoreError
from shepherd.store.messages import Attempt, Delivery, NewDelivery
from shepherd.store.models import JobSpec
from shepherd.store.sqlite import SqliteStore

__all__ = [
    "Announce",
    "Attempted",
    "ForgetJobs",
    "Reload",
    "Routed",
    "Router",
    "RouterMsg",
    "SinkFn",
    "Stop",
]

SinkFn = Callable[[Delivery], Awaitable[None]]


class Routed(msgspec.Struct, frozen=True, tag=True):
    """A run outcome, forwarded by the runtime (never blocks the dispatcher)."""

    event: OutcomeEvent


class Announce(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Deliver ``body`` to ``to`` / ``channel``; the reply gets the delivery id once
    the row is committed."""

    body: str
    to: str | None
    channel: str | None
    kind: str
    reply: Reply[int]
    job: str | None = None
    run_id: int | None = None
    dispatch_id: int | None = None
    outcome: str | None = None


class Attempted(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    delivery_id: int
    ok: bool
    sink: str | None = None
    error: str | None = None


class ForgetJobs(msgspec.Struct, frozen=True, tag=True):
    job_ids: list[int]


class Reload(msgspec.Struct, frozen=True, tag=True):
    """Pending deliveries changed in the store (operator retry): load them."""


class Stop(msgspec.Struct, frozen=True, tag=True):
    """Handle what is queued, then exit (pending sends resume on the next start)."""


RouterMsg = Routed | Announce | Attempted | ForgetJobs | Reload | Stop


class Router(RouterCommitMixin):
    def __init__(
        self,
        cfg: DeliveryConfig,
        *,
        store: SqliteStore,
        writer: Address[StoreMsg],
        mailbox: Mailbox[RouterMsg],
        clock: Clock,
        sinks: dict[str, SinkFn],
        http: HttpClient,
        gateway: GatewayConfig | None = None,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._writer = writer
        self._mailbox = mailbox
        self._clock = clock
        self._sinks = sinks  # the runtime's registry; read here, written by the runtime
        self._http = http
        self._gateway = gateway
        self.counters: dict[str, int] = dict.fromkeys(
            ("routed", "announced", "sent", "retried", "failed", "expired", "store_errors"), 0
        )
        self._reset()

    def _reset(self) -> None:
        self._pending: dict[int, Delivery] = {}  # not yet sent, by id
        self._due: list[tuple[float, int]] = []  # (next_attempt_at, id)
        self._ready: deque[int] = deque()  # due, waiting for a send slot
        self._inflight: set[int] = set()
        self._jobs: dict[int, tuple[JobSpec | None, float]] = {}
        self._next_expiry = 0.0
        self.last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._reset()
        self._self = self._mailbox.address()
        await self._reload()
        self._next_expiry = self._clock.wall()
        async with anyio.create_task_group() as tg:
            task_status.started()
            try:
                await self._loop(tg)
            finally:
                self._self.close()
                tg.cancel_scope.cancel()

    async def _loop(self, tg: TaskGroup) -> None:
        while True:
            try:
                first = await self._receive()
            except anyio.EndOfStream:
                return
            batch = self._mailbox.drain(first, 1000) if first is not None else []
            inserts: list[tuple[NewDelivery, Reply[int] | None]] = []
            attempts: list[Attempt] = []
            stop = False
            for msg in batch:
                match msg:
                    case Routed(event):
                        try:
                            new = await self._from_outcome(event)
                        except StoreError as exc:  # a read failed: this announce is lost
                            self._store_failed(exc)
                            new = None
                        if new is not None:
                            inserts.append((new, None))
                    case Announce():
                        inserts.append((self._explicit(msg), msg.reply))
                    case Attempted():
                        attempts.append(self._after_attempt(msg))
                    case ForgetJobs(job_ids):
                        for job_id in job_ids:
                            self._jobs.pop(job_id, None)
                    case Reload():
                        try:
                            await self._reload()
                        except StoreError as exc:  # the next Reload or restart retries
                            self._store_failed(exc)
                    case Stop():
                        stop = True
                    case _:
                        assert_never(msg)
            await self._commit(inserts, attempts)
            self._start_sends(tg)
            if stop:
                return

    async def _receive(self) -> RouterMsg | None:
        wake = min(self._next_expiry, self._due[0][0]) if self._due else self._next_expiry
        if wake <= self._clock.wall():
            return None
        return await receive_by(self._mailbox, self._clock, wake)

    # -- sending --------------------------------------------------------------------------

    def _start_sends(self, tg: TaskGroup) -> None:
        now = self._clock.wall()
        while self._due and self._due[0][0] <= now:
            at, delivery_id = heapq.heappop(self._due)
            d = self._pending.get(delivery_id)
            fresh = d is not None and (d.next_attempt_at or 0.0) == at
            if fresh and delivery_id not in self._inflight:
                self._ready.append(delivery_id)
        while self._ready and len(self._inflight) < self._cfg.concurrency:
            delivery_id = self._ready.popleft()
            d = self._pending.get(delivery_id)
            if d is None or delivery_id in self._inflight:
                continue
            self._inflight.add(delivery_id)
            tg.start_soon(self._send, d)

    async def _send(self, d: Delivery) -> None:
        sink: str | None = None
        error: str | None = None
        with anyio.CancelScope() as scope:
            self._clock.cancel_at(scope, self._clock.now() + float(self._cfg.timeout))
            sink, error = await self._deliver(d)
        if scope.cancelled_caught:
            error = f"sink {sink or '?'} did not answer within {float(self._cfg.timeout):g}s"
        await self._self.send(Attempted(delivery_id=d.id, ok=error is None, sink=sink, error=error))

    async def _deliver(self, d: Delivery) -> tuple[str | None, str | None]:
        """Send ``d`` once: (sink name, error or None)."""
        picked = pick_sink(
            d.channel, self._cfg.default_sink, self._sinks.keys(), self._cfg.webhooks
        )
        if picked is None:
            return None, f"no delivery sink for channel {d.channel or self._cfg.default_sink!r}"
        kind, name = picked
        if kind == "callback":
            try:
                await self._sinks[name](d)
            except Exception as exc:
                # A third place that catches broadly, on purpose: the sink is the
                # embedding application's code, and its failure is a delivery failure
                # to retry, never a crash of the router.
                return name, f"{type(exc).__name__}: {exc}"
            return name, None
        if kind == "webhook":
            url = self._cfg.webhooks[name]
            return name, await self._post(url, _webhook_body(d), {})
        gw = self._gateway
        if gw is None:
            return name, "no [gateway] configured for the gateway sink"
        body = {"text": d.body, "mode": "now", "channel": d.channel, "to": d.target}
        return name, await self._post(gw.endpoint(gw.delivery_path), body, gw.auth_headers())

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> str | None:
        try:
            response = await self._http.get().post(
                url, json=body, headers=headers, timeout=float(self._cfg.timeout)
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}".rstrip(": ")
        if 200 <= response.status_code < 300:
            return None
        return http_error_text(response, response.content)

    # -- introspection ---------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            "pending": len(self._pending),
            "inflight": len(self._inflight),
            "sinks": sorted(self._sinks),
            "last_error": self.last_error,
            **self.counters,
        }

    def __repr__(self) -> str:
        return f"<Router pending={len(self._pending)} sent={self.counters['sent']}>"


def _webhook_body(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id, "kind": d.kind, "text": d.body, "channel": d.channel, "to": d.target,
        "job": d.job_name, "run_id": d.run_id, "dispatch_id": d.dispatch_id,
        "outcome": d.outcome, "attempt": d.attempts + 1,
    }  # fmt: skip
