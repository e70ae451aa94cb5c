"""Admission, loop-free: verdicts, held counts, free keys, and one ``admit`` pass."""

from __future__ import annotations

import msgspec
import pytest

from shepherd.actors.dispatcher.admission import (
    Admission,
    Verdict,
    admit,
    check,
    free_keys,
    settle,
)
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.ready import Parked, ReadyQueue
from shepherd.actors.messages import Entry, RunFinished
from shepherd.store.models import JobSpec
from tests.actors.dispatcher.helpers import entry

QUEUE = JobSpec(name="q", target="t", overlap="queue", max_queued=2)


def test_waiters_are_fifo_and_bounded_by_max_queued() -> None:
    state, parked = Admission(), Parked()
    state.hold(1, None)
    for d in (1, 2):
        v = check(entry(d), QUEUE, state, parked, 0.0)
        assert v == Verdict("park", "overlap-queued", key="job:1")
        parked.park("job:1", d, 1)
    assert check(entry(3), QUEUE, state, parked, 0.0) == Verdict("skip", "queue-full")


def test_each_ending_verdict() -> None:
    state, parked = Admission(), Parked()
    assert check(entry(1), None, state, parked, 0.0) == Verdict("cancel", "job removed")
    expired = entry(1, expires_at=5.0)
    assert check(expired, QUEUE, state, parked, 5.0) == Verdict("dead", "expired")
    state.hold(1, None)
    skip = msgspec.structs.replace(QUEUE, overlap="skip")
    assert check(entry(1), skip, state, parked, 0.0) == Verdict("skip", "skipped-overlap")
    replace = msgspec.structs.replace(QUEUE, overlap="replace")
    assert check(entry(1), replace, state, parked, 0.0).action == "replace"


def test_a_disabled_jobs_dispatches_are_skipped_but_an_operators_run_now_waits() -> None:
    # disable = must not run: every kind is skipped (the schedule's fires, enqueues,
    # retries, chain and spawn dispatches) except ``run_now``, which an operator asked for
    state, parked = Admission(), Parked()
    state.hold(1, None)
    off = msgspec.structs.replace(QUEUE, enabled=False)
    for kind in ("schedule", "enqueue", "chain", "spawn", "replay"):
        assert check(entry(1, kind=kind), off, state, parked, 0.0) == Verdict("skip", "disabled")
    assert check(entry(2, kind="run_now"), off, state, parked, 0.0).action == "park"


def test_an_undeclared_pool_is_a_mutex_and_a_declared_one_has_its_limit() -> None:
    state, parked = Admission({"wide": 2}), Parked()
    mutex = JobSpec(name="m", target="t", pool="m")
    wide = JobSpec(name="w", target="t", pool="wide")
    state.hold(7, "m")
    assert check(entry(1), mutex, state, parked, 0.0) == Verdict("park", "pool-busy", key="pool:m")
    state.hold(8, "wide")
    assert check(entry(2), wide, state, parked, 0.0).action == "run"
    state.hold(9, "wide")
    assert check(entry(2), wide, state, parked, 0.0).action == "park"


def test_release_gives_back_the_counts_and_names_the_keys_to_hand_on() -> None:
    state = Admission()
    state.hold(1, "p")
    state.hold(1, "p")
    assert state.release(1, "p") == ["job:1", "pool:p"]
    assert state.running_by_job[1] == 1 and state.running_by_pool["p"] == 1
    assert state.release(1, None) == ["job:1"]
    assert 1 not in state.running_by_job


def test_free_keys_are_those_nothing_holds() -> None:
    state = Admission({"p": 2})
    pooled = JobSpec(name="p", target="t", pool="p")
    assert free_keys(1, pooled, state) == ["job:1", "pool:p"]
    state.hold(1, "p")
    assert free_keys(1, pooled, state) == ["pool:p"]  # one of two pool slots left
    state.hold(2, "p")
    assert free_keys(1, pooled, state) == []
    assert free_keys(3, None, state) == ["job:3"]  # a removed job: its job key only


def test_settle_maps_each_ending_verdict() -> None:
    skipped = settle(1, Verdict("skip", "disabled"))
    assert (skipped.status, skipped.outcome, skipped.reason) == ("done", "skipped", "disabled")
    with pytest.raises(ValueError, match="settle reason"):  # every ending verdict says why
        settle(1, Verdict("skip"))
    dead = settle(2, Verdict("dead", "expired"))
    assert (dead.status, dead.outcome, dead.reason) == ("dead", "cancelled", "expired")
    gone = settle(3, Verdict("cancel", "job removed"))
    assert (gone.status, gone.outcome) == ("cancelled", "cancelled")


def _queue(*entries: Entry) -> ReadyQueue:
    q = ReadyQueue()
    for e in entries:
        q.add(e, now=0.0)
    return q


def breakers() -> BreakerTable:
    return BreakerTable(fail_max=1, reset=30.0)


def test_admit_takes_ready_entries_in_order_up_to_the_free_slots() -> None:
    jobs = {1: JobSpec(name="a", target="t"), 2: JobSpec(name="b", target="t")}
    q = _queue(entry(1, priority=3), entry(2, job_id=2, priority=0), entry(3, priority=1))
    state = Admission()
    a = admit(q, jobs, state, breakers(), 2, 0.0)
    assert [e.id for e in a.claims] == [2, 3]
    assert state.running_by_job == {1: 1, 2: 1}
    assert len(q) == 1 and q.get(1) is not None  # no slot left for it: still queued


def test_admit_parks_settles_and_replaces() -> None:
    jobs = {
        1: QUEUE,
        2: JobSpec(name="r", target="t", overlap="replace"),
        3: JobSpec(name="s", target="t", overlap="skip"),
    }
    state = Admission()
    for job_id in jobs:
        state.hold(job_id, None)  # each job has a run in flight
    q = _queue(entry(1), entry(2, job_id=2), entry(3, job_id=3), entry(4, job_id=99))
    a = admit(q, jobs, state, breakers(), 10, 0.0)
    assert a.claims == []
    assert [(e.id, s.outcome, s.reason) for e, s in a.settles] == [
        (3, "skipped", "skipped-overlap"),
        (4, "cancelled", "job removed"),
    ]
    assert a.replaced == [2]
    assert q.parked.count("job:1") == 1 and q.parked.count("job:2") == 1
    assert 3 not in q and 4 not in q and 1 in q


def test_a_settled_dispatch_hands_its_free_key_to_the_next_waiter() -> None:
    jobs = {1: QUEUE}
    q = _queue(entry(1), entry(2, expires_at=1.0))
    state = Admission()
    waiting = q.pop_ready()
    assert waiting is not None and waiting.id == 1
    q.park("job:1", waiting)  # parked while a run held the job key, since released
    a = admit(q, jobs, state, breakers(), 1, 5.0)
    assert [(e.id, s.reason) for e, s in a.settles] == [(2, "expired")]
    assert a.unparked == 1 and [e.id for e in a.claims] == [1]


def test_an_open_breaker_defers_its_executors_dispatches_without_an_attempt() -> None:
    jobs = {1: JobSpec(name="a", target="t", executor="agent")}
    table = breakers()
    failure = RunFinished(run_id=1, dispatch_id=1, outcome="error", reason="deferred")
    table.on_outcome("agent", failure, 100.0)  # fail_max 1: open until 130
    q = _queue(entry(1))
    a = admit(q, jobs, Admission(), table, 4, 100.0)
    assert a.claims == [] and a.deferred == 1
    e = q.get(1)
    assert e is not None and e.not_before == 130.0 and e.attempt == 0
    assert q.next_wake() == 130.0
    q.promote(130.0)
    assert [e.id for e in admit(q, jobs, Admission(), table, 4, 130.0).claims] == [1]
