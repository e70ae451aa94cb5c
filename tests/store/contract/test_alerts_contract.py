"""Store contract: the op that dead-letters a dispatch writes its alert delivery in
its own transaction (``FinishRuns``), once: a fenced repeat writes none."""

from __future__ import annotations

import pytest

from shepherd.store.ops import DeadLetterAlert, FinishRun, FinishRuns
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, claim, enqueue, new

pytestmark = pytest.mark.anyio


async def test_a_dead_letter_gets_one_alert_from_the_op_that_ends_it(store: Store) -> None:
    job_id = await add_job(store, "j", options={"dead_letter_alert": {"to": "lead"}})
    [(dispatch_id, _)] = await enqueue(store, new(job_id, "j", payload=b'{"task": "t"}'))
    run_id = await claim(store, dispatch_id, job_id=job_id)
    assert run_id
    f = FinishRun(
        run_id=run_id,
        dispatch_id=dispatch_id,
        outcome="error",
        next="dead",
        error="boom",
        dead_reason="attempts",
    )
    assert await store.apply_one(FinishRuns([f], 5.0, ORIGIN)) == [0]
    assert await store.apply_one(FinishRuns([f], 6.0, ORIGIN)) == [None]  # fenced
    [alert] = await store.deliveries(job="j")
    assert (alert.kind, alert.target, alert.dispatch_id, alert.run_id) == (
        "dead_letter",
        "lead",
        dispatch_id,
        run_id,
    )
    assert 'Task: "t"' in alert.body and alert.status == "pending"


async def test_a_job_without_a_route_gets_its_global_one_or_none(store: Store) -> None:
    quiet = await add_job(store, "quiet", options={"dead_letter_alert": False})
    loud = await add_job(store, "loud")
    finals = []
    for job_id, name in ((quiet, "quiet"), (loud, "loud")):
        [(d, _)] = await enqueue(store, new(job_id, name))
        run_id = await claim(store, d, job_id=job_id)
        assert run_id
        finals.append(FinishRun(run_id=run_id, dispatch_id=d, outcome="error", next="dead"))
    alert = DeadLetterAlert(to="ops", channel="slack", max_attempts=3)
    assert await store.apply_one(FinishRuns(finals, 5.0, ORIGIN, alert=alert)) == [0, 0]
    assert await store.deliveries(job="quiet") == []
    [sent] = await store.deliveries(job="loud")
    assert (sent.channel, sent.target, sent.max_attempts) == ("slack", "ops", 3)
