"""Chains in the store contract: the graph is checked inside ``SaveJob``'s transaction,
``FinishRuns`` fires children with the parent's outcome (one transaction, fenced, never
twice) and ``CancelChain`` walks a dispatch's descendants."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.store.errors import ConfigError, StoreError
from shepherd.store.models import JobSpec, encode_json
from shepherd.store.ops import CancelChain, FinishRun, FinishRuns, SaveJob
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, claim, enqueue, new

pytestmark = pytest.mark.anyio


def _save(name: str, **spec: Any) -> SaveJob:
    body = JobSpec(name=name, target="ok", **spec)
    return SaveJob(name, body.executor, body.enabled, encode_json(body), None, 1.0)


async def test_two_saves_in_one_batch_cannot_make_a_cycle(store: Store) -> None:
    await add_job(store, "a")
    await add_job(store, "b")
    first, second = await store.apply(
        [_save("a", parent="b", trigger_on="success"), _save("b", parent="a", trigger_on="success")]
    )
    assert isinstance(first, int)
    assert isinstance(second, StoreError) and isinstance(second.__cause__, ConfigError)
    assert second.__cause__.field == "parent" and "cycle b → a → b" in str(second)
    a, b = await store.job("a"), await store.job("b")
    assert a is not None and a.spec.parent == "b"
    assert b is not None and b.spec.parent is None


async def _ended(
    store: Store, job_id: int, *, outcome: str = "ok", next: str = "done", **kw: Any
) -> tuple[int, Any]:
    [(d, _)] = await enqueue(store, new(job_id, "p"))
    run_id = await claim(store, d, job_id=job_id)
    assert run_id
    f = FinishRun(run_id=run_id, dispatch_id=d, outcome=outcome, next=next, **kw)  # type: ignore[arg-type]
    [got] = await store.apply([FinishRuns([f], 10.0, ORIGIN)])
    return run_id, got


async def test_finish_fires_children_in_its_transaction_and_never_twice(store: Store) -> None:
    parent = await add_job(store, "p")
    kid = await add_job(store, "k", parent="p", trigger_on="success", trigger_delay=5)
    await add_job(store, "f", parent="p", trigger_on="failure")
    run_id, got = await _ended(store, parent, stdout="hello")
    assert list(got) == [0]
    [child] = got.children
    assert (child.row.job_id, child.row.kind, child.row.parent_run_id) == (kid, "chain", run_id)
    assert child.row.not_before == 15.0
    d = await store.dispatch(child.id)
    assert d is not None and d.status == "queued"
    assert d.payload == {"trigger": d.payload["trigger"]} and d.payload["trigger"]["stdout"] == (
        "hello"
    )
    # the same outcome again is fenced: no second child
    f = FinishRun(run_id=run_id, dispatch_id=d.id, outcome="ok", next="done")
    [again] = await store.apply([FinishRuns([f], 11.0, ORIGIN)])
    assert list(again) == [None] and again.children == []
    assert [x.id for x in await store.dispatches(job="k")] == [child.id]


async def test_retry_and_cancel_fire_nothing_dead_fires_failure(store: Store) -> None:
    parent = await add_job(store, "p")
    await add_job(store, "any", parent="p", trigger_on="complete")
    _, retried = await _ended(store, parent, outcome="error", next="retry", not_before=20.0)
    _, cancelled = await _ended(store, parent, outcome="cancelled", next="cancelled")
    assert retried.children == [] and cancelled.children == []
    run_id, dead = await _ended(store, parent, outcome="error", next="dead", error="bad")
    [child] = dead.children
    assert child.row.parent_run_id == run_id


async def test_jobs_without_children_get_a_plain_result(store: Store) -> None:
    job = await add_job(store, "solo")
    _, got = await _ended(store, job)
    assert list(got) == [0] and got.children == []


async def test_cancel_chain_walks_descendants(store: Store) -> None:
    parent = await add_job(store, "p")
    kid = await add_job(store, "k", parent="p", trigger_on="success")
    await add_job(store, "g", parent="k", trigger_on="success", trigger_delay=60)
    await add_job(store, "k2", parent="p", trigger_on="success", trigger_delay=60)
    [(pd, _)] = await enqueue(store, new(parent, "p"))
    run_id = await claim(store, pd, job_id=parent)
    assert run_id
    [got] = await store.apply(
        [FinishRuns([FinishRun(run_id=run_id, dispatch_id=pd, outcome="ok", next="done")], 5.0)]
    )
    by_job = {c.row.job_name: c.id for c in got.children}
    k_run = await claim(store, by_job["k"], job_id=kid)
    assert k_run
    f = FinishRun(run_id=k_run, dispatch_id=by_job["k"], outcome="ok", next="done")
    [k_got] = await store.apply([FinishRuns([f], 6.0)])
    [grand] = k_got.children
    cancelled = await store.apply_one(CancelChain(pd, 7.0))
    assert sorted(cancelled) == sorted([by_job["k2"], grand.id])
    assert (await store.dispatch(by_job["k"])).status == "done"  # type: ignore[union-attr]
    assert await store.apply_one(CancelChain(pd, 8.0)) == []


async def test_backlog_counts_the_children_of_the_same_batch(store: Store) -> None:
    parent = await add_job(store, "p")
    await add_job(store, "k", parent="p", trigger_on="success", max_queued=1)
    finals = []
    for _ in range(2):
        [(d, _)] = await enqueue(store, new(parent, "p"))
        run_id = await claim(store, d, job_id=parent)
        assert run_id
        finals.append(FinishRun(run_id=run_id, dispatch_id=d, outcome="ok", next="done"))
    [got] = await store.apply([FinishRuns(finals, 9.0, ORIGIN)])
    assert len(got.children) == 1
    [skip] = await store.runs(job="k")
    assert (skip.status, skip.reason) == ("skipped", "chain-backlog")
