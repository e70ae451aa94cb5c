"""The router actor: inbox expiry and announce delivery to sinks, with durable retries.

Role: owns the ``messages`` and ``deliveries`` tables' lifecycle. It sweeps expired
inbox messages; turns run outcomes into announce deliveries (``delivery`` decides
whether and what); takes explicit deliveries (watchdog alerts, ``Runtime.deliver``);
and sends each one to its sink (``sinks``: a callback registered by the embedding
gateway, a webhook, or the gateway), retrying failures with backoff until
``max_attempts``, then ``failed`` (``outbox``). A delivery never changes its run's
outcome. Sending, inserting and acknowledging are separate steps, so a crash between
them re-sends (at-least-once delivery). What arrived together commits together: the
new rows, the attempts and the expiry sweep go to the writer at once.

Inbox: ``RouterMsg`` (``router.messages``). Sends: write ops to the store writer,
HTTP requests, callbacks, ``Attempted`` to itself from its send tasks (children in
its own task group, at most ``concurrency``, each bounded by ``timeout``).
Restart type: permanent; on (re)start it reloads every pending delivery from the store.
Timers: the earliest due delivery; the expiry sweep every ``expire_interval``.
"""

from __future__ import annotations

import logging
from typing import Any, assert_never

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from shepherd.actors.executors.gateway import GatewayConfig, HttpClient
from shepherd.actors.messages import OutcomeEvent
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Mailbox, Reply, receive_by, serving
from shepherd.actors.router.delivery import (
    DeliveryConfig,
    announce_delivery,
    explicit_delivery,
    resolve_target,
    should_announce,
)
from shepherd.actors.router.messages import (
    Announce,
    Attempted,
    ForgetJobs,
    Reload,
    Routed,
    RouterMsg,
    Stop,
)
from shepherd.actors.router.outbox import Outbox
from shepherd.actors.router.sinks import SinkFn, Sinks
from shepherd.actors.writer import StoreMsg, write_each
from shepherd.store.errors import StoreError
from shepherd.store.models import Delivery, JobSpec
from shepherd.store.ops import (
    Attempt,
    ExpireMessages,
    InsertDeliveries,
    NewDelivery,
    RecordAttempts,
    WriteOp,
)
from shepherd.store.protocol import Store

__all__ = ["Router"]

log = logging.getLogger("shepherd.router")

JOB_CACHE_TTL = 30.0  # seconds; in-process job changes invalidate at once (ForgetJobs)

_Insert = tuple[NewDelivery, Reply[int] | None]


class Router:
    def __init__(
        self,
        cfg: DeliveryConfig,
        *,
        store: Store,
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
        self._sinks = Sinks(cfg, sinks, http, gateway)
        self._outbox = Outbox(cfg)
        self.counters: dict[str, int] = dict.fromkeys(
            ("routed", "announced", "expired", "store_errors"), 0
        )
        self._reset()

    def _reset(self) -> None:
        self._outbox.clear()
        self._jobs: dict[int, tuple[JobSpec | None, float]] = {}  # job id -> (spec, read at)
        self._next_expiry = 0.0
        self.last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._reset()
        self._outbox.reload(await self._store.pending_deliveries())
        self._next_expiry = self._clock.wall()
        async with serving(self._mailbox) as (tg, self._self):
            task_status.started()
            await self._loop(tg)

    async def _loop(self, tg: TaskGroup) -> None:
        while True:
            try:
                first = await self._receive()
            except anyio.EndOfStream:
                return
            batch = self._mailbox.drain(first, 1000) if first is not None else []
            inserts: list[_Insert] = []
            attempts: list[Attempt] = []
            stop = reload = False
            for msg in batch:
                match msg:
                    case Routed(event):
                        # its dead letter's alert row was committed with it: load it
                        reload = reload or event.status == "dead"
                        try:
                            new = await self._from_outcome(event)
                        except StoreError as exc:  # a read failed: this announce is lost
                            self._store_failed(exc)
                            new = None
                        if new is not None:
                            inserts.append((new, None))
                    case Announce():
                        new = explicit_delivery(msg, self._cfg, self._clock.wall())
                        inserts.append((new, msg.reply))
                    case Attempted():
                        attempts.append(self._attempted(msg))
                    case ForgetJobs(job_ids):
                        for job_id in job_ids:
                            self._jobs.pop(job_id, None)
                    case Reload():
                        reload = True
                    case Stop():
                        stop = True
                    case _:
                        assert_never(msg)
            swept = await self._commit(inserts, attempts)
            if reload or swept:
                await self._reload()
            for d in self._outbox.take(self._clock.wall()):
                tg.start_soon(self._send, d)
            if stop:
                return

    async def _receive(self) -> RouterMsg | None:
        due = self._outbox.next_due()
        wake = self._next_expiry if due is None else min(self._next_expiry, due)
        if wake <= self._clock.wall():
            return None
        return await receive_by(self._mailbox, self._clock, wake)

    # -- deciding ------------------------------------------------------------------

    async def _job(self, job_id: int) -> JobSpec | None:
        now = self._clock.now()
        cached = self._jobs.get(job_id)
        if cached is not None and now - cached[1] < JOB_CACHE_TTL:
            return cached[0]
        row = await self._store.job(job_id)
        spec = row.spec if row is not None else None
        self._jobs[job_id] = (spec, now)
        return spec

    async def _from_outcome(self, event: OutcomeEvent) -> NewDelivery | None:
        self.counters["routed"] += 1
        if event.run_id is None or not event.deliver or not event.job_id:
            return None
        job = await self._job(event.job_id)
        if job is None or not should_announce(job, event.outcome, event.deliver):
            return None
        run = await self._store.run(event.run_id)
        if run is None:
            return None
        new = announce_delivery(job, event, run, self._cfg, self._clock.wall())
        if new is not None:
            self.counters["announced"] += 1
        return new

    def _attempted(self, msg: Attempted) -> Attempt:
        verdict, attempt = self._outbox.attempted(msg, self._clock.wall())
        if verdict == "failed":
            log.warning("delivery %s failed for good: %s", msg.delivery_id, msg.error)
        return attempt

    # -- sending and committing ----------------------------------------------------

    async def _send(self, d: Delivery) -> None:
        if d.kind == "approval":  # queued by the store's gate, which knows no aliases
            if (stale := await self._decided(d)) is not None:
                gone = Attempted(delivery_id=d.id, ok=False, error=stale, final=True)
                await self._self.send(gone)
                return
            channel, target = resolve_target(d.target, d.channel, self._cfg.aliases)
            d = msgspec.structs.replace(d, channel=channel, target=target)
        sink: str | None = None
        error: str | None = None
        with anyio.CancelScope() as scope:
            self._clock.cancel_at(scope, self._clock.now() + float(self._cfg.timeout))
            sink, error = await self._sinks.send(d)
        if scope.cancelled_caught:
            error = f"sink {sink or '?'} did not answer within {float(self._cfg.timeout):g}s"
        await self._self.send(Attempted(delivery_id=d.id, ok=error is None, sink=sink, error=error))

    async def _decided(self, d: Delivery) -> str | None:
        """Why the approval request ``d`` must not go out: its dispatch no longer awaits
        the approval (approved, rejected, timed out, cancelled) since it was queued or
        last tried; None while it still waits (or the store cannot say: it is sent)."""
        if d.dispatch_id is None:
            return None
        try:
            row = await self._store.dispatch(d.dispatch_id)
        except StoreError:
            return None
        if row is not None and row.status == "awaiting_approval":
            return None
        now = row.status if row is not None else "removed"
        return f"not sent: the approval was decided first (dispatch {d.dispatch_id} is {now})"

    async def _reload(self) -> None:
        """Track the pending rows others committed: operator retries, dead-letter alerts
        (committed by the dispatcher's ops, also by crash recovery before the dispatcher
        tells anyone); on every expiry sweep too, so none waits past the next sweep."""
        try:
            self._outbox.reload(await self._store.pending_deliveries())
        except StoreError as exc:  # the next Reload, sweep or restart retries
            self._store_failed(exc)

    async def _commit(self, inserts: list[_Insert], attempts: list[Attempt]) -> bool:
        """Commit what arrived together; whether the expiry sweep ran."""
        now = self._clock.wall()
        ops: list[WriteOp] = []
        if inserts:
            ops.append(InsertDeliveries([n for n, _ in inserts], now))
        if attempts:
            ops.append(RecordAttempts(attempts, now))
        expire = now >= self._next_expiry
        if expire:
            ops.append(ExpireMessages(now))
            self._next_expiry = now + float(self._cfg.expire_interval)
        if not ops:
            return False
        results = await write_each(self._writer, ops)
        if inserts:
            ids = results.pop(0)
            if isinstance(ids, StoreError):
                self._store_failed(ids)
                for _, reply in inserts:
                    if reply is not None:
                        reply.fail(ids)
            else:
                for (new, reply), delivery_id in zip(inserts, ids, strict=True):
                    self._outbox.inserted(delivery_id, new, now)
                    if reply is not None:
                        reply.set(delivery_id)
        if attempts and isinstance(results.pop(0), StoreError):
            self.counters["store_errors"] += 1  # rows stay pending; resent after a restart
        if expire:
            expired = results.pop(0)
            if isinstance(expired, StoreError):
                self._store_failed(expired)
            else:
                self.counters["expired"] += int(expired)
        return expire

    def _store_failed(self, exc: StoreError) -> None:
        self.counters["store_errors"] += 1
        self.last_error = str(exc)
        log.error("router could not commit: %s", exc)

    # -- introspection -------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            "pending": len(self._outbox),
            "inflight": self._outbox.inflight,
            "sinks": self._sinks.names(),
            "last_error": self.last_error,
            **self.counters,
            **self._outbox.counters,
        }

    def __repr__(self) -> str:
        return f"<Router pending={len(self._outbox)} sent={self._outbox.counters['sent']}>"
