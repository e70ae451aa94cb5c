"""The run table, loop-free: fencing, heartbeats, the stale backstop, run orders."""

from __future__ import annotations

from shepherd.actors.dispatcher.runs import Running, RunTable, run_order
from shepherd.actors.messages import RunFinished
from shepherd.store.models import JobSpec, Seconds
from tests.actors.dispatcher.helpers import entry

JOB = JobSpec(name="j", target="t", timeout=Seconds(10.0), idle_timeout=Seconds(4.0))


def table(*runs: Running) -> RunTable:
    t = RunTable()
    for r in runs:
        t.add(r)
    return t


def test_a_report_is_fenced_unless_it_is_the_dispatchs_current_run() -> None:
    r = Running(7, entry(1), 1, None)
    t = table(r)
    assert t.current(RunFinished(run_id=7, dispatch_id=1, outcome="ok")) is r
    assert t.current(RunFinished(run_id=6, dispatch_id=1, outcome="ok")) is None
    assert t.by_run(7) is r and t.by_run(6) is None and t.of_job(1) == [7]
    t.remove(r)
    assert t.current(RunFinished(run_id=7, dispatch_id=1, outcome="ok")) is None
    assert len(t) == 0 and 1 not in t


def test_heartbeats_are_collected_once_and_dropped_with_their_run() -> None:
    r = Running(7, entry(1), 1, None, started=0.0, activity=0.0)
    t = table(r, Running(8, entry(2), 1, None))
    t.heartbeat(1, 7, now=3.0, wall=1003.0)
    t.heartbeat(1, 99, now=4.0, wall=1004.0)  # not its current run: ignored
    t.heartbeat(2, 8, now=4.0, wall=1004.0)
    assert r.activity == 3.0
    assert t.take_beats() == [(7, 1003.0), (8, 1004.0)]
    assert t.take_beats() == []
    t.heartbeat(1, 7, now=5.0, wall=1005.0)
    t.remove(r)
    assert t.take_beats() == []


def test_a_stale_run_is_cancelled_once_then_finalized_as_timeout() -> None:
    r = Running(7, entry(1), 1, None, started=0.0, activity=0.0)
    t = table(r, Running(8, entry(2, job_id=2), 1, None))  # job 2 unknown: left alone
    jobs = {1: JOB}
    assert t.stale(jobs, 8.9, margin=5.0) == ([], [])  # idle deadline 4 + margin 5
    assert t.stale(jobs, 9.0, margin=5.0) == ([7], [])
    assert r.forced
    assert t.stale(jobs, 13.9, margin=5.0) == ([], [])
    cancel, finish = t.stale(jobs, 14.0, margin=5.0)
    assert cancel == [] and [(f.run_id, f.outcome, f.reason) for f in finish] == [
        (7, "timeout", "stale")
    ]
    assert finish[0].timed_out


def test_a_heartbeat_moves_the_idle_deadline_not_the_absolute_one() -> None:
    r = Running(7, entry(1), 1, None, started=0.0, activity=0.0)
    t = table(r)
    t.heartbeat(1, 7, now=8.0, wall=0.0)
    assert t.stale({1: JOB}, 14.9, margin=5.0) == ([], [])  # timeout 10 + 5
    assert t.stale({1: JOB}, 15.0, margin=5.0) == ([7], [])


def test_a_run_order_carries_the_payload_and_the_lineage_key() -> None:
    job = JobSpec(name="j", target="t", payload={"from": "job"})
    order = run_order(entry(5, max_attempts=4), job, run_id=9, attempt=2)
    assert (order.run_id, order.dispatch_id, order.attempt, order.max_attempts) == (9, 5, 2, 4)
    assert order.payload == {"from": "job"} and order.idempotency_key
    own = run_order(entry(5, payload={"x": 1}, idempotency_key="k"), job, 9, 1)
    assert own.payload == {"x": 1} and own.idempotency_key == "k"
