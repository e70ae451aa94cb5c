"""The ready queue, loop-free: heap order, delayed timers, lazy deletion, parked waiters."""

from __future__ import annotations

import msgspec

from shepherd.actors.dispatcher.ready import Parked, ReadyQueue
from shepherd.store.models import JobSpec
from tests.actors.dispatcher.helpers import entry

QUEUE = JobSpec(name="q", target="t", overlap="queue", max_queued=2)


def drain(q: ReadyQueue) -> list[int]:
    out = []
    while (e := q.pop_ready()) is not None:
        out.append(e.id)
    return out


def test_ready_entries_pop_by_priority_then_not_before_then_seq() -> None:
    q = ReadyQueue()
    q.add(entry(1, priority=3), now=10.0)
    q.add(entry(2, priority=1, not_before=5.0), now=10.0)
    q.add(entry(3, priority=1, not_before=2.0), now=10.0)
    q.add(entry(4, priority=1, not_before=2.0, seq=0), now=10.0)
    assert drain(q) == [4, 3, 2, 1]
    assert len(q) == 4, "popping leaves the entries held: the caller takes them"


def test_a_future_entry_waits_on_the_delayed_heap_until_promoted() -> None:
    q = ReadyQueue()
    q.add(entry(1, not_before=20.0), now=10.0)
    q.add(entry(2, not_before=15.0), now=10.0)
    assert q.next_wake() == 15.0 and q.pop_ready() is None
    q.promote(15.0)
    assert drain(q) == [2]
    q.promote(25.0)
    assert drain(q) == [1]
    assert q.statistics() == {"queued": 2, "ready": 0, "delayed": 0, "parked": 0}


def test_taken_or_replaced_entries_are_skipped_when_popped() -> None:
    q = ReadyQueue()
    q.add(entry(1), now=0.0)
    q.add(entry(2), now=0.0)
    assert q.take(1) is not None and 1 not in q
    q.add(entry(2, seq=9, not_before=50.0), now=0.0)  # a newer seq: the old item is stale
    assert drain(q) == []
    q.add(entry(2, seq=9), now=0.0)  # the same seq again: left as it is
    assert q.get(2) == entry(2, seq=9, not_before=50.0)


def test_defer_moves_an_entry_to_the_delayed_heap_with_its_new_not_before() -> None:
    q = ReadyQueue()
    q.add(entry(1), now=0.0)
    e = q.pop_ready()
    assert e is not None
    q.defer(e, 30.0)
    assert q.get(1) == msgspec.structs.replace(e, not_before=30.0)
    assert q.next_wake() == 30.0 and drain(q) == []
    q.promote(30.0)
    assert drain(q) == [1]


def test_unpark_hands_the_key_to_the_first_waiter_still_queued() -> None:
    q = ReadyQueue()
    for d in (1, 2, 3):
        q.add(entry(d), now=0.0)
        e = q.pop_ready()
        assert e is not None
        q.park("job:1", e)
    assert q.take(1) is not None  # cancelled while it waited
    assert q.unpark("job:1") and drain(q) == [2]
    assert q.unpark("job:1") and drain(q) == [3]
    assert not q.unpark("job:1") and not q.unpark("pool:none")


def test_waiters_of_a_changed_job_go_back_to_the_ready_heap() -> None:
    q = ReadyQueue()
    q.add(entry(1), now=0.0)
    q.add(entry(2, job_id=2), now=0.0)
    for e in (q.pop_ready(), q.pop_ready()):
        assert e is not None
        q.park(f"job:{e.job_id}", e)
    off = msgspec.structs.replace(QUEUE, enabled=False)
    q.take_changed({1: QUEUE, 2: QUEUE}, {1: off, 2: QUEUE})
    assert drain(q) == [1] and len(q.parked) == 1


def test_parked_pop_passes_over_waiters_that_left_the_queue() -> None:
    parked = Parked()
    for d in (1, 2, 3):
        parked.park("job:1", d, 1)
    assert parked.pop("job:1", {3}) == 3  # 1 and 2 were cancelled meanwhile
    assert parked.pop("job:1", {1, 2, 3}) is None and len(parked) == 0


def test_a_changed_job_takes_back_only_its_own_waiters() -> None:
    parked = Parked()
    parked.park("job:1", 10, 1)
    parked.park("pool:p", 11, 1)
    parked.park("pool:p", 20, 2)
    parked.park("job:1", 12, 1)
    off = msgspec.structs.replace(QUEUE, enabled=False)
    other = JobSpec(name="o", target="t", pool="p")
    before = {1: QUEUE, 2: other}
    assert parked.take_changed(before, {1: QUEUE, 2: other}) == []  # nothing changed
    assert parked.take_changed(before, {1: off, 2: other}) == [10, 12, 11]
    assert len(parked) == 1 and parked.pop("pool:p", {20}) == 20


def test_a_removed_job_takes_back_its_waiters() -> None:
    parked = Parked()
    parked.park("job:1", 10, 1)
    assert parked.take_changed({1: QUEUE}, {}) == [10]
