"""The admission core, loop-free: verdicts, parked waiters, which keys are free."""

from __future__ import annotations

import msgspec

from shepherd.actors.admission import AdmissionState, Parked, Verdict, check, free_keys, settle
from shepherd.actors.messages import Entry
from shepherd.store.models import JobSpec

QUEUE = JobSpec(name="q", target="t", overlap="queue", max_queued=2)


def entry(dispatch_id: int, *, job_id: int = 1, kind: str = "schedule") -> Entry:
    return Entry(
        id=dispatch_id,
        seq=dispatch_id,
        job_id=job_id,
        priority=2,
        not_before=0.0,
        attempt=0,
        max_attempts=1,
        kind=kind,
    )


def test_waiters_are_fifo_and_bounded_by_max_queued() -> None:
    state = AdmissionState()
    state.running_by_job[1] = 1
    for d in (1, 2):
        v = check(entry(d), QUEUE, state, 0.0)
        assert v == Verdict("park", "overlap-queued", key="job:1")
        state.parked.park("job:1", d, 1)
    assert check(entry(3), QUEUE, state, 0.0) == Verdict("skip", "queue-full")
    assert state.parked.pop("job:1", {1, 2}) == 1
    assert state.parked.count("job:1") == 1 and len(state.parked) == 1


def test_pop_passes_over_waiters_that_left_the_queue() -> None:
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


def test_a_disabled_jobs_fires_are_skipped_and_other_kinds_still_wait() -> None:
    state = AdmissionState()
    state.running_by_job[1] = 1
    off = msgspec.structs.replace(QUEUE, enabled=False)
    assert check(entry(1), off, state, 0.0) == Verdict("skip", "disabled")
    assert check(entry(2, kind="enqueue"), off, state, 0.0).action == "park"


def test_free_keys_are_those_nothing_holds() -> None:
    state = AdmissionState({"p": 2})
    pooled = JobSpec(name="p", target="t", pool="p")
    assert free_keys(1, pooled, state) == ["job:1", "pool:p"]
    state.running_by_job[1] = 1
    state.running_by_pool["p"] = 1
    assert free_keys(1, pooled, state) == ["pool:p"]  # one of two pool slots left
    state.running_by_pool["p"] = 2
    assert free_keys(1, pooled, state) == []
    assert free_keys(2, None, state) == ["job:2"]  # a removed job: its job key only


def test_settle_maps_each_ending_verdict() -> None:
    skipped = settle(1, Verdict("skip", "disabled"))
    assert (skipped.status, skipped.outcome, skipped.reason) == ("done", "skipped", "disabled")
    assert settle(1, Verdict("skip")).reason == "skip"  # no reason: the action names it
    dead = settle(2, Verdict("dead", "expired"))
    assert (dead.status, dead.outcome, dead.reason) == ("dead", "cancelled", "expired")
    gone = settle(3, Verdict("cancel", "job removed"))
    assert (gone.status, gone.outcome) == ("cancelled", "cancelled")
