"""The commit batch, loop-free: the ops of one pass, and what follows their commit."""

from __future__ import annotations

from collections import Counter

from shepherd.actors.dispatcher.admission import Admission
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.commit import Batch
from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.actors.dispatcher.ready import ReadyQueue
from shepherd.actors.dispatcher.runs import Running, RunTable
from shepherd.actors.messages import Entry, Event, OutcomeEvent, RunFinished, SlotRecord
from shepherd.actors.primitives.clock import FakeClock
from shepherd.store.errors import StoreError
from shepherd.store.models import JobSpec
from shepherd.store.ops import ClaimRuns, FinishRuns, Settle, SettleQueued
from tests.actors.dispatcher.helpers import entry

NOW = 1_700_000_000.0
SKIP = Settle(dispatch_id=2, status="done", outcome="skipped", reason="disabled")


class Rig:
    def __init__(self) -> None:
        self.jobs = JobTable({1: JobSpec(name="j", target="t", pool="p")})
        self.queue = ReadyQueue()
        self.runs = RunTable()
        self.admission = Admission()
        self.breakers = BreakerTable(fail_max=1, reset=30.0)
        self.counters: Counter[str] = Counter()  # the shell passes every name at 0
        self.events: list[Event] = []
        self.wakes = 0
        self.started: list[tuple[int, int]] = []
        self.batch = Batch(
            instance="me",
            jobs=self.jobs,
            queue=self.queue,
            runs=self.runs,
            admission=self.admission,
            breakers=self.breakers,
            counters=self.counters,
            clock=FakeClock(wall=NOW),
            emit=self.events.append,
            wake=self.wake,
            start=self.start,
        )

    def wake(self) -> None:
        self.wakes += 1

    def start(self, e: Entry, job: JobSpec, run_id: int, now: float) -> None:
        self.started.append((e.id, run_id))

    def running(self, dispatch_id: int, run_id: int) -> Running:
        r = Running(run_id, entry(dispatch_id), 1, "p")
        self.runs.add(r)
        self.admission.hold(1, "p")
        return r


def test_one_pass_is_at_most_three_ops_and_a_stale_report_is_fenced() -> None:
    rig = Rig()
    rig.running(1, 7)
    rig.batch.finished += [
        RunFinished(run_id=7, dispatch_id=1, outcome="ok"),
        RunFinished(run_id=6, dispatch_id=1, outcome="ok"),  # an earlier run's late report
    ]
    rig.batch.settles.append((entry(2), SKIP))
    rig.batch.claims.append(entry(3))
    p = rig.batch.take(NOW)
    assert [type(op) for op in p.ops] == [FinishRuns, SettleQueued, ClaimRuns]
    assert rig.counters == {"fenced": 1} and not rig.batch
    finals = p.ops[0]
    assert isinstance(finals, FinishRuns) and [f.run_id for f in finals.finals] == [7]
    assert rig.batch.take(NOW).ops == []


def test_committed_outcomes_release_their_keys_and_retries_are_queued_again() -> None:
    rig = Rig()
    rig.running(1, 7)
    rig.running(2, 8)
    waiter = entry(5)
    rig.queue.add(waiter, NOW)
    assert rig.queue.pop_ready() == waiter
    rig.queue.park("pool:p", waiter)
    rig.batch.finished += [
        RunFinished(run_id=7, dispatch_id=1, outcome="ok"),
        RunFinished(run_id=8, dispatch_id=2, outcome="error", error="boom"),
    ]
    p = rig.batch.take(NOW)
    rig.batch.committed(p, [[0, 99]], NOW)
    assert len(rig.runs) == 0 and rig.admission.running_by_job == {}
    assert rig.wakes == 1 and rig.queue.pop_ready() == waiter  # handed the pool key
    again = rig.queue.get(2)
    assert again is not None and (again.seq, again.attempt) == (99, 1)
    statuses = [(e.dispatch_id, e.status) for e in rig.events if isinstance(e, OutcomeEvent)]
    assert statuses == [(1, "done"), (2, "queued")]
    assert rig.counters == {"ok": 1, "error": 1, "retried": 1}


def test_an_outcome_says_whether_its_job_announces_it() -> None:
    rig = Rig()
    rig.jobs[2] = JobSpec(
        name="told", target="t", options={"delivery": "announce-always", "delivery_to": "ops"}
    )
    rig.running(1, 7)
    rig.runs.add(Running(8, entry(2, job_id=2), 1, None))
    rig.batch.finished += [
        RunFinished(run_id=7, dispatch_id=1, outcome="ok"),
        RunFinished(run_id=8, dispatch_id=2, outcome="ok"),
    ]
    rig.batch.committed(rig.batch.take(NOW), [[0, 0]], NOW)
    told = {e.dispatch_id: e.announce for e in rig.events if isinstance(e, OutcomeEvent)}
    assert told == {1: False, 2: True}  # only the second reaches the router


def test_a_fenced_finish_still_releases_and_emits_nothing() -> None:
    rig = Rig()
    rig.running(1, 7)
    rig.batch.finished.append(RunFinished(run_id=7, dispatch_id=1, outcome="ok"))
    rig.batch.committed(rig.batch.take(NOW), [StoreError("finishing failed")], NOW)
    assert len(rig.runs) == 0 and rig.events == [] and rig.counters == {"fenced": 1}


def test_committed_claims_start_runs_and_a_taken_key_is_recorded_skipped() -> None:
    rig = Rig()
    rig.batch.claims += [entry(1), entry(2), entry(3)]
    for _ in range(3):
        rig.admission.hold(1, "p")
    rig.batch.committed(rig.batch.take(NOW), [[41, 0, None]], NOW)
    assert rig.started == [(1, 41)]
    assert rig.admission.running_by_job[1] == 1  # 2 and 3 gave theirs back
    assert [type(e) for e in rig.events] == [SlotRecord, OutcomeEvent]
    assert rig.counters == {"skipped": 1, "lost": 1}
    assert rig.wakes == 1  # two slots are free again: the next pass fills them


def test_claims_all_won_by_another_node_wake_the_next_pass() -> None:
    rig = Rig()
    rig.batch.claims += [entry(1), entry(2)]
    for _ in range(2):
        rig.admission.hold(1, "p")
    rig.batch.committed(rig.batch.take(NOW), [[None, None]], NOW)
    assert rig.started == [] and rig.admission.running_by_job.get(1, 0) == 0
    assert rig.counters == {"lost": 2} and rig.wakes == 1
    rig.batch.claims.append(entry(3))
    rig.admission.hold(1, "p")
    rig.batch.committed(rig.batch.take(NOW), [[42]], NOW)
    assert rig.started == [(3, 42)] and rig.wakes == 1  # all won: nothing to wake for


def test_a_failed_group_keeps_the_outcomes_and_queues_the_rest_again() -> None:
    rig = Rig()
    rig.running(1, 7)
    msg = RunFinished(run_id=7, dispatch_id=1, outcome="ok")
    rig.batch.finished.append(msg)
    rig.batch.settles.append((entry(2), SKIP))
    rig.batch.claims.append(entry(3))
    rig.admission.hold(1, "p")
    p = rig.batch.take(NOW)
    rig.batch.finished.append(RunFinished(run_id=9, dispatch_id=9, outcome="ok"))
    rig.batch.failed(p)
    assert [m.run_id for m in rig.batch.finished] == [7, 9]
    assert 2 in rig.queue and 3 in rig.queue and 1 not in rig.queue
    assert rig.admission.running_by_job[1] == 1  # the claim's hold given back
    assert rig.events == []


def test_an_entry_with_a_run_in_flight_is_not_queued_again() -> None:
    rig = Rig()
    rig.running(1, 7)
    rig.batch.add(entry(1, seq=50))
    assert 1 not in rig.queue
    rig.batch.add(entry(2))
    assert 2 in rig.queue
