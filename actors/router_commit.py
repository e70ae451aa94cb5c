"""The router's deciding and committing half: turn run outcomes, explicit announces and
send attempts into delivery rows and attempt records, commit them in one group of writes
(with the inbox expiry sweep), and track what is still to be sent.

A mixin of ``actors.router.Router``, split from ``actors/router.py`` as
``actors/dispatcher_commit.py`` is from the dispatcher: same actor, same state. The
decisions stay in the pure module ``actors.delivery``; this is the shell around them.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from shepherd.actors.clock import Clock
from shepherd.actors.delivery import (
    DeliveryConfig,
    announce_text,
    resolve_target,
    retry_delay,
    should_announce,
)
from shepherd.actors.mailbox import Address, Reply
from shepherd.actors.messages import OutcomeEvent
from shepherd.actors.writer import StoreMsg, Write
from shepherd.store import queries
from shepherd.store.errors import StoreError
from shepherd.store.messages import (
    Attempt,
    Delivery,
    ExpireMessages,
    InsertDeliveries,
    NewDelivery,
    RecordAttempts,
    pending_deliveries,
)
from shepherd.store.models import JobSpec
from shepherd.store.ops import WriteOp
from shepherd.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from shepherd.actors.router import Announce, Attempted

__all__ = ["RouterCommitMixin"]

log = logging.getLogger("shepherd.router")

JOB_CACHE_TTL = 30.0  # seconds; in-process job changes invalidate at once (ForgetJobs)


class RouterCommitMixin:
    # state owned by Router (declared here for the type checker)
    _cfg: DeliveryConfig
    _store: SqliteStore
    _writer: Address[StoreMsg]
    _clock: Clock
    counters: dict[str, int]
    _pending: dict[int, Delivery]
    _due: list[tuple[float, int]]
    _inflight: set[int]
    _jobs: dict[int, tuple[JobSpec | None, float]]
    _next_expiry: float
    last_error: str | None

    # -- deciding -----------------------------------------------------------------------

    async def _job(self, job_id: int) -> JobSpec | None:
        now = self._clock.now()
        cached = self._jobs.get(job_id)
        if cached is not None and now - cached[1] < JOB_CACHE_TTL:
            return cached[0]
        row = await self._store.read(queries.get_job, job_id)
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
        run = await self._store.read(queries.get_run, event.run_id)
        if run is None or run.reason == "deferred":  # a deferral is not a failure
            return None
        body = announce_text(job, event.outcome, run, will_retry=event.status == "queued")
        if not body.strip():
            return None
        opts = job.options
        channel, target = resolve_target(
            opts.get("delivery_to"), opts.get("delivery_channel"), self._cfg.aliases
        )
        self.counters["announced"] += 1
        return NewDelivery(
            kind="announce", body=body, channel=channel, target=target,
            max_attempts=self._cfg.max_attempts, next_attempt_at=self._clock.wall(),
            job_id=event.job_id, job_name=job.name, run_id=event.run_id,
            dispatch_id=event.dispatch_id, outcome=event.outcome,
        )  # fmt: skip

    def _explicit(self, msg: Announce) -> NewDelivery:
        channel, target = resolve_target(msg.to, msg.channel, self._cfg.aliases)
        return NewDelivery(
            kind=msg.kind, body=msg.body, channel=channel, target=target,
            max_attempts=self._cfg.max_attempts, next_attempt_at=self._clock.wall(),
            job_name=msg.job, run_id=msg.run_id, dispatch_id=msg.dispatch_id,
            outcome=msg.outcome,
        )  # fmt: skip

    def _after_attempt(self, msg: Attempted) -> Attempt:
        self._inflight.discard(msg.delivery_id)
        d = self._pending.pop(msg.delivery_id, None)
        if msg.ok:
            self.counters["sent"] += 1
            return Attempt(id=msg.delivery_id, ok=True, sink=msg.sink)
        if d is None:  # not tracked (cannot happen): keep it pending for a Reload
            at = self._clock.wall() + float(self._cfg.retry_base)
            return Attempt(
                id=msg.delivery_id, ok=False, sink=msg.sink, error=msg.error, next_attempt_at=at
            )
        attempts = d.attempts + 1
        if attempts >= d.max_attempts:
            self.counters["failed"] += 1
            log.warning("delivery %s failed for good: %s", msg.delivery_id, msg.error)
            return Attempt(id=msg.delivery_id, ok=False, sink=msg.sink, error=msg.error)
        self.counters["retried"] += 1
        at = self._clock.wall() + retry_delay(
            attempts, float(self._cfg.retry_base), float(self._cfg.retry_max)
        )
        self._pending[d.id] = msgspec.structs.replace(
            d, attempts=attempts, next_attempt_at=at, last_error=msg.error
        )
        heapq.heappush(self._due, (at, d.id))
        return Attempt(id=d.id, ok=False, sink=msg.sink, error=msg.error, next_attempt_at=at)

    # -- committing ---------------------------------------------------------------------

    async def _commit(
        self, inserts: list[tuple[NewDelivery, Reply[int] | None]], attempts: list[Attempt]
    ) -> None:
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
            return
        results = await _write_all(self._writer, ops)
        if inserts:
            ids = results.pop(0)
            if isinstance(ids, StoreError):
                self._store_failed(ids)
                for _, reply in inserts:
                    if reply is not None:
                        reply.fail(ids)
            else:
                for (new, reply), delivery_id in zip(inserts, ids, strict=True):
                    self._track(_as_delivery(delivery_id, new, now))
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

    def _store_failed(self, exc: StoreError) -> None:
        self.counters["store_errors"] += 1
        self.last_error = str(exc)
        log.error("router could not commit: %s", exc)

    def _track(self, d: Delivery) -> None:
        self._pending[d.id] = d
        heapq.heappush(self._due, (d.next_attempt_at or 0.0, d.id))

    async def _reload(self) -> None:
        for d in await self._store.read(pending_deliveries):
            if d.id not in self._pending:
                self._track(d)


def _as_delivery(delivery_id: int, new: NewDelivery, now: float) -> Delivery:
    return Delivery(
        id=delivery_id, kind=new.kind, status="pending", body=new.body, channel=new.channel,
        target=new.target, attempts=0, max_attempts=new.max_attempts, created_at=now,
        updated_at=now, next_attempt_at=new.next_attempt_at, job_id=new.job_id,
        job_name=new.job_name, run_id=new.run_id, dispatch_id=new.dispatch_id,
        outcome=new.outcome,
    )  # fmt: skip


async def _write_all(writer: Address[StoreMsg], ops: Sequence[WriteOp]) -> list[Any]:
    """Send the ops at once (same or consecutive commits); each result or its StoreError."""
    replies: list[Reply[Any]] = []
    for op in ops:
        reply: Reply[Any] = Reply()
        await writer.send(Write(op, reply))
        replies.append(reply)
    out: list[Any] = []
    for reply in replies:
        try:
            out.append(await reply.wait())
        except StoreError as exc:
            out.append(exc)
    return out
