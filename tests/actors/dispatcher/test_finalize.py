"""Finalization, loop-free: the retry policy table row by row, the ops and the events."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from shepherd.actors.dispatcher.finalize import (
    Decision,
    backoff,
    claim_op,
    decide,
    finish_op,
    finished,
    key_taken,
    settled,
)
from shepherd.actors.messages import OutcomeEvent, RunFinished, SlotRecord
from shepherd.store import keys
from shepherd.store.models import JobSpec, RetryPolicy, Seconds
from shepherd.store.ops import Settle
from tests.actors.dispatcher.helpers import entry

POLICY = RetryPolicy(base=Seconds(10.0), factor=2.0, max_delay=Seconds(60.0))
JOB = JobSpec(name="j", target="t", retry=POLICY)
AT_LEAST_ONCE = msgspec.structs.replace(JOB, delivery_guarantee="at-least-once")


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def report(**kw: Any) -> RunFinished:
    return RunFinished(run_id=9, dispatch_id=1, **{"outcome": "error", **kw})


@pytest.mark.parametrize(
    ("msg", "job", "attempt", "expected"),
    [
        (report(outcome="ok"), JOB, 1, Decision("done")),
        (report(outcome="cancelled", reason="operator"), JOB, 1, Decision("cancelled")),
        (report(outcome="cancelled", reason="replaced"), AT_LEAST_ONCE, 1, Decision("cancelled")),
        (report(outcome="cancelled", reason="shutdown"), JOB, 1, Decision("cancelled")),
        (
            report(outcome="cancelled", reason="shutdown"),
            AT_LEAST_ONCE,
            1,
            Decision("requeue", not_before=100.0),
        ),
        (
            report(reason="deferred", retry_after=5.0),
            JOB,
            3,
            Decision("requeue", not_before=105.0, refund=True),
        ),
        (report(retry=False), JOB, 1, Decision("dead", dead_reason="discarded")),
        (report(outcome="timeout"), JOB, 3, Decision("dead", dead_reason="attempts")),
        (report(outcome="crashed"), JOB, 2, Decision("retry", not_before=120.0)),
        (report(retry_after=7.0), JOB, 1, Decision("retry", not_before=107.0)),
    ],
)
def test_the_policy_table(msg: RunFinished, job: JobSpec, attempt: int, expected: Decision) -> None:
    assert decide(entry(1, max_attempts=3), job, msg, 100.0, attempt=attempt) == expected


def test_a_retry_at_or_after_expiry_is_a_dead_letter() -> None:
    e = entry(1, expires_at=110.0)
    assert decide(e, JOB, report(), 100.0, attempt=1) == Decision("dead", dead_reason="expired")
    assert decide(e, JOB, report(retry_after=9.0), 100.0, attempt=1).next == "retry"


def test_backoff_grows_caps_and_jitters() -> None:
    assert [backoff(n, POLICY) for n in (1, 2, 3, 4, 5)] == [10.0, 20.0, 40.0, 60.0, 60.0]
    jittery = msgspec.structs.replace(POLICY, jitter=0.1)
    assert backoff(1, jittery, 0.0) == pytest.approx(9.0)
    assert backoff(1, jittery, 1.0) == pytest.approx(11.0)
    rng = random.Random(1)
    d = decide(
        entry(1), msgspec.structs.replace(JOB, retry=jittery), report(), 0.0, attempt=1, rng=rng
    )
    assert d.not_before is not None and 9.0 <= d.not_before <= 11.0


def test_the_finish_op_carries_the_decision_and_the_report() -> None:
    msg = report(outcome="ok", result={"n": 1}, details={"tokens": 3}, exit_code=0)
    f = finish_op(msg, entry(1), JOB, 100.0, attempt=1)
    assert (f.run_id, f.dispatch_id, f.outcome, f.next) == (9, 1, "ok", "done")
    assert f.result == b'{"n":1}' and f.details == b'{"tokens":3}' and f.exit_code == 0
    odd = finish_op(report(outcome="ok", result=Opaque()), entry(1), JOB, 0.0, attempt=1)
    assert odd.result == b'"<opaque>"'  # not JSON: stored as its repr


def test_a_claim_takes_the_next_attempt_and_the_key_ttl_of_its_job() -> None:
    c = claim_op(entry(4, attempt=1), JOB)
    assert (c.dispatch_id, c.attempt, c.job_id, c.key_ttl) == (4, 2, 1, keys.DEFAULT_TTL)
    assert c.idempotency_key == keys.lineage_key(4)
    short = claim_op(
        entry(4, idempotency_key="k"), msgspec.structs.replace(JOB, delete_after_run=True)
    )
    assert (short.idempotency_key, short.key_ttl) == ("k", keys.SHORT_TTL)


def test_a_committed_retry_is_queued_again_with_its_new_seq() -> None:
    e = entry(1, attempt=0)
    msg = report(error="boom")
    f = finish_op(msg, e, JOB, 100.0, attempt=1)
    again, event = finished(msg, e, 1, f, 42, "j", 100.0)
    assert again is not None and (again.seq, again.attempt, again.not_before) == (42, 1, 110.0)
    assert (event.status, event.final, event.next_attempt_at, event.error) == (
        "queued",
        False,
        110.0,
        "boom",
    )


def test_a_deferral_refunds_its_attempt() -> None:
    e, msg = entry(1, attempt=2), report(reason="deferred", retry_after=5.0)
    f = finish_op(msg, e, JOB, 100.0, attempt=3)
    again, event = finished(msg, e, 3, f, 43, "j", 100.0)
    assert again is not None and again.attempt == 2 and event.status == "queued"


def test_a_final_end_queues_nothing() -> None:
    e, msg = entry(1), report(retry=False)
    f = finish_op(msg, e, JOB, 100.0, attempt=1)
    again, event = finished(msg, e, 1, f, 0, "j", 100.0)
    assert again is None
    assert (event.status, event.final, event.dead_reason, event.run_id) == (
        "dead",
        True,
        "discarded",
        9,
    )


def test_events_of_dispatches_that_ended_without_running() -> None:
    e = entry(1, slot=60.0)
    skip = Settle(dispatch_id=1, status="done", outcome="skipped", reason="skipped-overlap")
    record, out = settled(e, skip, "j", 5.0)
    assert isinstance(record, SlotRecord) and record.reason == "skipped-overlap"
    assert isinstance(out, OutcomeEvent) and (out.status, out.run_id) == ("done", None)
    dead = Settle(dispatch_id=1, status="dead", outcome="cancelled", reason="expired")
    [only] = settled(e, dead, "j", 5.0)
    assert isinstance(only, OutcomeEvent) and only.dead_reason == "expired"
    record, out = key_taken(e, "j", 5.0)
    assert isinstance(record, SlotRecord) and record.reason == "idempotency-skip"
    assert isinstance(out, OutcomeEvent) and (out.outcome, out.status) == ("skipped", "done")
