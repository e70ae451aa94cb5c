"""The router's outbox: the deliveries still to be sent and the retry decision.

Owned by the router actor and used only inside its loop; no I/O, no clock (methods
take ``now``, wall-clock epoch seconds). A delivery is tracked from its committed
insert (or a reload of the pending rows) until its send ends:

    pending ──due──▶ ready ──take──▶ in flight ──attempted──▶ sent | retry | failed
                       ▲                                          │
                       └──────────── due again (backoff) ─────────┘

``take`` starts at most ``concurrency`` sends at once; a retry is due after
``retry_delay(attempts, retry_base, retry_max)``; after ``max_attempts`` sends the
delivery is ``failed`` for good. Each step's ``store.ops.Attempt`` is what the
actor commits. The heap of due times is lazily cleaned: an entry whose time no longer
matches its delivery's ``next_attempt_at`` is dead.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import Literal

import msgspec

from shepherd.actors.router.delivery import DeliveryConfig, retry_delay
from shepherd.actors.router.messages import Attempted
from shepherd.store.models import Delivery
from shepherd.store.ops import Attempt, NewDelivery

__all__ = ["Outbox", "Verdict"]

Verdict = Literal["sent", "retry", "failed", "untracked"]


class Outbox:
    def __init__(self, cfg: DeliveryConfig) -> None:
        self._cfg = cfg
        self.counters = {"sent": 0, "retried": 0, "failed": 0}  # kept across ``clear``
        self.clear()

    def clear(self) -> None:
        """Forget every tracked delivery (the store keeps them: reload to resume)."""
        self._pending: dict[int, Delivery] = {}  # not yet sent, by id
        self._due: list[tuple[float, int]] = []  # (next_attempt_at, id)
        self._ready: deque[int] = deque()  # due, waiting for a send slot
        self._inflight: set[int] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def __repr__(self) -> str:
        return f"<Outbox pending={len(self._pending)} inflight={len(self._inflight)}>"

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def track(self, d: Delivery) -> None:
        self._pending[d.id] = d
        heapq.heappush(self._due, (d.next_attempt_at or 0.0, d.id))

    def inserted(self, delivery_id: int, new: NewDelivery, now: float) -> None:
        """A delivery row from ``new`` was committed as ``delivery_id``."""
        self.track(_as_delivery(delivery_id, new, now))

    def reload(self, stored: Iterable[Delivery]) -> None:
        """The store's pending rows: track those not tracked yet."""
        for d in stored:
            if d.id not in self._pending:
                self.track(d)

    def take(self, now: float) -> list[Delivery]:
        """The deliveries due by ``now`` that may start sending (marked in flight)."""
        while self._due and self._due[0][0] <= now:
            at, delivery_id = heapq.heappop(self._due)
            d = self._pending.get(delivery_id)
            fresh = d is not None and (d.next_attempt_at or 0.0) == at
            if fresh and delivery_id not in self._inflight:
                self._ready.append(delivery_id)
        out: list[Delivery] = []
        while self._ready and len(self._inflight) < self._cfg.concurrency:
            delivery_id = self._ready.popleft()
            d = self._pending.get(delivery_id)
            if d is None or delivery_id in self._inflight:
                continue
            self._inflight.add(delivery_id)
            out.append(d)
        return out

    def attempted(self, msg: Attempted, now: float) -> tuple[Verdict, Attempt]:
        """A send ended: what happens to the delivery, and the attempt to record."""
        self._inflight.discard(msg.delivery_id)
        d = self._pending.pop(msg.delivery_id, None)
        if msg.ok:
            self.counters["sent"] += 1
            return "sent", Attempt(id=msg.delivery_id, ok=True, sink=msg.sink)
        if d is None:  # not tracked (cannot happen): keep it pending for a Reload
            at = now + float(self._cfg.retry_base)
            attempt = Attempt(
                id=msg.delivery_id, ok=False, sink=msg.sink, error=msg.error, next_attempt_at=at
            )
            return "untracked", attempt
        attempts = d.attempts + 1
        if attempts >= d.max_attempts or msg.final:
            self.counters["failed"] += 1
            return "failed", Attempt(id=msg.delivery_id, ok=False, sink=msg.sink, error=msg.error)
        self.counters["retried"] += 1
        at = now + retry_delay(attempts, float(self._cfg.retry_base), float(self._cfg.retry_max))
        self.track(
            msgspec.structs.replace(d, attempts=attempts, next_attempt_at=at, last_error=msg.error)
        )
        return "retry", Attempt(
            id=d.id, ok=False, sink=msg.sink, error=msg.error, next_attempt_at=at
        )


def _as_delivery(delivery_id: int, new: NewDelivery, now: float) -> Delivery:
    return Delivery(
        id=delivery_id, kind=new.kind, status="pending", body=new.body, channel=new.channel,
        target=new.target, attempts=0, max_attempts=new.max_attempts, created_at=now,
        updated_at=now, next_attempt_at=new.next_attempt_at, job_id=new.job_id,
        job_name=new.job_name, run_id=new.run_id, dispatch_id=new.dispatch_id,
        outcome=new.outcome,
    )  # fmt: skip
