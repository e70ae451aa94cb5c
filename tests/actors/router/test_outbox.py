"""The router's outbox on its own, no loop: due order, the concurrency cap, retries."""

from __future__ import annotations

from shepherd.actors.router.delivery import DeliveryConfig
from shepherd.actors.router.messages import Attempted
from shepherd.actors.router.outbox import Outbox
from shepherd.store.models import Delivery, Seconds
from shepherd.store.ops import NewDelivery

CFG = DeliveryConfig(concurrency=2, max_attempts=3, retry_base=Seconds(5.0), retry_max=Seconds(8.0))


def delivery(delivery_id: int, at: float, *, attempts: int = 0, max_attempts: int = 3) -> Delivery:
    return Delivery(
        id=delivery_id,
        kind="api",
        status="pending",
        body="hi",
        channel=None,
        target="ops",
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=0.0,
        updated_at=0.0,
        next_attempt_at=at,
    )


def failed(delivery_id: int) -> Attempted:
    return Attempted(delivery_id=delivery_id, ok=False, sink="hook", error="HTTP 500")


def test_take_starts_due_deliveries_earliest_first_up_to_the_cap() -> None:
    box = Outbox(CFG)
    for i, at in ((1, 30.0), (2, 10.0), (3, 20.0), (4, 99.0)):
        box.track(delivery(i, at))
    assert box.next_due() == 10.0
    assert box.take(5.0) == []
    assert [d.id for d in box.take(50.0)] == [2, 3]  # concurrency 2
    assert box.inflight == 2 and len(box) == 4
    assert box.take(50.0) == []  # no free slot yet
    verdict, attempt = box.attempted(Attempted(delivery_id=2, ok=True, sink="hook"), 50.0)
    assert verdict == "sent" and attempt.ok and attempt.next_attempt_at is None
    assert [d.id for d in box.take(50.0)] == [1]  # waited in the ready queue
    assert len(box) == 3


def test_a_failed_send_is_retried_with_capped_backoff_then_fails_for_good() -> None:
    box = Outbox(CFG)
    box.track(delivery(1, 0.0))
    now = 100.0
    delays = []
    for _ in range(2):
        (d,) = box.take(now)
        verdict, attempt = box.attempted(failed(d.id), now)
        assert verdict == "retry" and attempt.error == "HTTP 500"
        assert attempt.next_attempt_at is not None
        delays.append(attempt.next_attempt_at - now)
        assert box.take(attempt.next_attempt_at - 0.001) == []
        now = attempt.next_attempt_at
    assert delays == [5.0, 8.0]  # 5 · 2^0, then 5 · 2^1 capped at 8
    (d,) = box.take(now)
    assert d.attempts == 2 and d.last_error == "HTTP 500"
    verdict, attempt = box.attempted(failed(d.id), now)
    assert verdict == "failed" and attempt.next_attempt_at is None
    assert len(box) == 0 and box.take(now + 1000) == []


def test_reload_tracks_only_new_rows_and_inserted_rows_are_due_at_once() -> None:
    box = Outbox(CFG)
    box.track(delivery(1, 10.0))
    box.reload([delivery(1, 10.0), delivery(2, 10.0)])
    assert len(box) == 2
    new = NewDelivery(
        kind="announce", body="x", channel=None, target="ops", max_attempts=3, next_attempt_at=1.0
    )
    box.inserted(7, new, 1.0)
    assert [d.id for d in box.take(1.0)] == [7]


def test_a_superseded_due_time_is_dead() -> None:
    box = Outbox(CFG)
    box.track(delivery(1, 0.0))
    (d,) = box.take(0.0)
    verdict, attempt = box.attempted(failed(d.id), 0.0)
    assert verdict == "retry" and attempt.next_attempt_at == 5.0
    box.track(delivery(1, 50.0))  # an operator's reload moved it: the 5.0 entry is dead
    assert box.take(10.0) == []
    assert [d.id for d in box.take(50.0)] == [1]


def test_an_untracked_attempt_stays_pending_for_a_reload() -> None:
    verdict, attempt = Outbox(CFG).attempted(failed(9), 100.0)
    assert verdict == "untracked" and attempt.next_attempt_at == 105.0
