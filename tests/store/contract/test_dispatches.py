"""Store contract: enqueue, producer keys, claim (fencing), finish (done / retry / dead),
cancel, settle and dead letters — through the protocol only."""

from __future__ import annotations

import pytest

from shepherd.store.errors import StoreError
from shepherd.store.ops import (
    CancelDispatch,
    InsertDispatches,
    MarkMessages,
    PurgeDead,
    RetryDead,
    Settle,
    SettleQueued,
)
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio


async def test_enqueue_gives_ids_and_seqs_in_order_and_reads_them_back(store: Store) -> None:
    a = await add_job(store, "a")
    [(d1, s1), (d2, s2)] = await enqueue(store, new(a), new(a, payload=b'{"n":2}'))
    assert d2 > d1 and s2 > s1
    d = await store.dispatch(d2)
    assert d is not None and (d.status, d.job_id, d.attempt, d.payload) == (
        "queued",
        a,
        0,
        {"n": 2},
    )
    assert await store.dispatch(d2 + 100) is None
    assert [x.id for x in await store.queued_since(0)] == [d1, d2]
    assert [x.id for x in await store.queued_since(s1)] == [d2]
    assert await store.queued_since(0, exclude_origin=ORIGIN) == []
    assert [x.id for x in await store.dispatches(job="a")] == [d2, d1]  # newest first
    assert (await store.stats())["dispatches"]["queued"] == 2


async def test_a_producer_key_binds_one_dispatch_per_job_whatever_its_state(store: Store) -> None:
    a, b = await add_job(store, "a"), await add_job(store, "b")
    [(d, _)] = await enqueue(store, new(a, idempotency_key="K"))
    assert await enqueue(store, new(a, idempotency_key="K")) == [d]
    run = await claim(store, d)
    assert run and await finish(store, run, d) == 0
    assert await enqueue(store, new(a, idempotency_key="K")) == [d]  # done: still bound
    assert await store.dispatch_by_key(a, "K") == d
    [(other, _)] = await enqueue(store, new(b, "b", idempotency_key="K"))
    assert other != d and await store.dispatch_by_key(b, "K") == other
    assert await store.dispatch_by_key(a, "nope") == 0


async def test_a_slot_has_at_most_one_dispatch(store: Store) -> None:
    a = await add_job(store, "a")
    [first] = await enqueue(store, new(a, kind="schedule", slot=60.0))
    assert isinstance(first, tuple)
    assert await enqueue(store, new(a, kind="schedule", slot=60.0)) == [None]


async def test_a_claim_takes_a_queued_dispatch_once(store: Store) -> None:
    a = await add_job(store, "a")
    [(d, _)] = await enqueue(store, new(a))
    run_id = await claim(store, d)
    assert run_id
    assert await claim(store, d) is None  # no longer queued
    disp, run = await store.dispatch(d), await store.run(run_id)
    assert disp is not None and (disp.status, disp.current_run_id, disp.attempt) == (
        "running",
        run_id,
        1,
    )
    assert run is not None and (run.status, run.dispatch_id, run.attempt) == ("running", d, 1)
    assert [r.id for r in await store.runs(status="running")] == [run_id]
    assert (await store.stats())["runs_running"] == 1


async def test_finish_done_is_fenced_to_the_current_run(store: Store) -> None:
    a = await add_job(store, "a")
    [(d, _)] = await enqueue(store, new(a))
    run_id = await claim(store, d)
    assert run_id and await finish(store, run_id, d, result=b'{"ok":1}') == 0
    assert await finish(store, run_id, d, outcome="error", next="dead") is None  # late
    disp, run = await store.dispatch(d), await store.run(run_id)
    assert disp is not None and (disp.status, disp.outcome, disp.result) == (
        "done",
        "ok",
        {"ok": 1},
    )
    assert run is not None and (run.status, run.finished_at) == ("ok", 4.0)


async def test_finish_retry_requeues_with_a_new_seq_and_its_delay(store: Store) -> None:
    a = await add_job(store, "a")
    [(d, seq)] = await enqueue(store, new(a))
    run_id = await claim(store, d)
    assert run_id
    new_seq = await finish(
        store, run_id, d, outcome="error", next="retry", error="boom", not_before=30.0
    )
    assert new_seq is not None and new_seq > seq
    disp = await store.dispatch(d)
    assert disp is not None
    assert (disp.status, disp.seq, disp.not_before, disp.last_error, disp.current_run_id) == (
        "queued",
        new_seq,
        30.0,
        "boom",
        None,
    )
    assert [x.id for x in await store.queued_since(seq)] == [d]
    second = await claim(store, d, attempt=2)
    assert second and second != run_id
    assert [r.attempt for r in await store.runs(dispatch_id=d)] == [2, 1]


async def test_finish_dead_then_retry_and_purge_the_dead_letter(store: Store) -> None:
    a = await add_job(store, "a")
    [(d, _)] = await enqueue(store, new(a))
    run_id = await claim(store, d)
    assert run_id
    assert await finish(store, run_id, d, outcome="error", next="dead", dead_reason="failed") == 0
    [dead] = await store.dispatches(status="dead")
    assert (dead.id, dead.dead_reason) == (d, "failed")
    assert await store.apply_one(RetryDead([d], 5.0, origin=ORIGIN)) == [d]
    disp = await store.dispatch(d)
    assert disp is not None and disp.status == "queued"
    run_id = await claim(store, d, now=6.0)
    assert run_id and await finish(store, run_id, d, outcome="error", next="dead", now=7.0) == 0
    assert await store.apply_one(PurgeDead(ids=[d])) == 1
    assert await store.dispatch(d) is None and await store.runs(dispatch_id=d) == []


async def test_a_purged_newest_dead_letter_leaves_its_numbers_used(store: Store) -> None:
    """Ids and seqs are never handed out twice: the purge of the newest dispatch (and
    its run) does not let the next enqueue take its id, seq or run id."""
    a = await add_job(store, "a")
    [(d, seq)] = await enqueue(store, new(a))
    run_id = await claim(store, d)
    assert run_id and await finish(store, run_id, d, outcome="error", next="dead") == 0
    assert await store.apply_one(PurgeDead(ids=[d])) == 1
    [(again, again_seq)] = await enqueue(store, new(a))
    assert again > d and again_seq > seq
    again_run = await claim(store, again)
    assert again_run and again_run > run_id
    assert await store.apply_one(PurgeDead()) == 0  # nothing dead: the floors stay as they were
    [(third, _)] = await enqueue(store, new(a))
    assert third == again + 1


async def test_cancel_ends_a_queued_dispatch_and_flags_a_running_one(store: Store) -> None:
    a = await add_job(store, "a")
    [(q, _), (r, _)] = await enqueue(store, new(a), new(a))
    assert await claim(store, r)
    assert await store.apply_one(CancelDispatch(q, 5.0)) == "cancelled"
    assert await store.apply_one(CancelDispatch(r, 5.0)) == "running"
    assert await store.apply_one(CancelDispatch(r + 100, 5.0)) is None
    assert await store.cancel_requests() == [(r, "running")]


async def test_settle_ends_only_queued_dispatches(store: Store) -> None:
    a = await add_job(store, "a")
    [(q, _), (r, _)] = await enqueue(store, new(a), new(a))
    assert await claim(store, r)
    items = [
        Settle(dispatch_id=d, status="done", outcome="skipped", reason="expired") for d in (q, r)
    ]
    assert await store.apply_one(SettleQueued(items, 5.0)) == [True, False]
    disp = await store.dispatch(q)
    assert disp is not None and (disp.status, disp.outcome) == ("done", "skipped")


async def test_one_failed_op_does_not_undo_the_others_in_a_batch(store: Store) -> None:
    a = await add_job(store, "a")
    ok, bad = InsertDispatches([new(a)], ORIGIN, 2.0), MarkMessages([1], "bogus", 2.0)
    [inserted, failed] = await store.apply([ok, bad])
    assert isinstance(failed, StoreError)
    [(d, _)] = inserted
    assert await store.dispatch(d) is not None
