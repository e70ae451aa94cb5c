"""Store contract: jobs (save, look up, remove; ids never reused) and the scheduler's
slot commit (``RecordSlots``: compare-and-set on the next fire time) — through the
protocol only."""

from __future__ import annotations

import pytest

from shepherd.store.ops import DeleteJob, RecordSlots, SetJobState, SkippedSlot, SlotItem
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio


async def test_a_job_is_found_by_name_or_id_and_saved_again_in_place(store: Store) -> None:
    b = await add_job(store, "b", next_run_at=60.0)
    a = await add_job(store, "a")
    row = await store.job("b")
    assert row is not None and (row.id, row.spec.name, row.next_run_at) == (b, "b", 60.0)
    assert await store.job(b) == row and await store.job(str(b)) == row
    assert await store.job("nope") is None
    assert [j.spec.name for j in await store.jobs()] == ["a", "b"]  # by name
    assert set(await store.jobs_by_id([a, b, 999])) == {a, b}
    assert await add_job(store, "b", now=2.0, priority="high") == b
    again = await store.job("b")
    assert again is not None and again.spec.priority == "high"
    assert (await store.stats())["jobs"] == 2


async def test_job_state_updates_only_what_it_names(store: Store) -> None:
    a = await add_job(store, "a", next_run_at=60.0)
    op = SetJobState(a, 2.0, last_status="ok", consecutive_errors=0, enabled=False)
    assert await store.apply_one(op)
    row = await store.job(a)
    assert row is not None and (row.last_status, row.next_run_at) == ("ok", 60.0)
    assert (await store.stats())["jobs_enabled"] == 0
    assert not await store.apply_one(SetJobState(a + 100, 2.0))


async def test_removing_a_job_cancels_its_queue_and_its_id_is_never_reused(store: Store) -> None:
    a = await add_job(store, "a")
    b = await add_job(store, "b")
    [(q, _), (r, _)] = await enqueue(store, new(b, "b", idempotency_key="K"), new(b, "b"))
    assert await claim(store, r)
    assert await store.apply_one(DeleteJob(b, 5.0))
    assert await store.job("b") is None and not await store.apply_one(DeleteJob(b, 5.0))
    queued = await store.dispatch(q)
    assert queued is not None and queued.status == "cancelled"
    assert await store.cancel_requests() == [(r, "running")]
    c = await add_job(store, "c", now=6.0)
    assert c not in (a, b)
    [got] = await enqueue(store, new(c, "c", idempotency_key="K"), now=7.0)
    assert isinstance(got, tuple) and got[0] != q  # the removed job's key is not c's


def _slots(job_id: int, expect: float | None, nxt: float, *slots: float) -> SlotItem:
    return SlotItem(
        job_id=job_id,
        job_name="a",
        expect_next=expect,
        next_run_at=nxt,
        dispatches=[new(job_id, kind="schedule", slot=s, not_before=s) for s in slots],
    )


async def test_due_slots_commit_once_against_the_stored_next_fire_time(store: Store) -> None:
    a = await add_job(store, "a", next_run_at=60.0)
    [got] = await store.apply_one(RecordSlots([_slots(a, 60.0, 120.0, 60.0)], ORIGIN, 61.0))
    assert isinstance(got, list) and len(got) == 1 and isinstance(got[0], tuple)
    (d, _) = got[0]
    row = await store.job(a)
    assert row is not None and row.next_run_at == 120.0
    # a stale planner (it still expects 60.0) commits nothing
    assert await store.apply_one(RecordSlots([_slots(a, 60.0, 120.0, 60.0)], ORIGIN, 62.0)) == [
        None
    ]
    disp = await store.dispatch(d)
    assert disp is not None and (disp.kind, disp.slot) == ("schedule", 60.0)
    assert await store.schedule_states([a]) == {a: "queued"}
    run_id = await claim(store, d)
    assert run_id and await finish(store, run_id, d) == 0
    assert await store.schedule_states([a, a + 100]) == {a: "done"}


async def test_a_skipped_slot_leaves_a_run_saying_why(store: Store) -> None:
    a = await add_job(store, "a", next_run_at=60.0)
    item = SlotItem(
        job_id=a,
        job_name="a",
        expect_next=60.0,
        next_run_at=180.0,
        skipped=[SkippedSlot(slot=60.0, reason="missed", error="missed by 70s")],
    )
    assert await store.apply_one(RecordSlots([item], ORIGIN, 130.0)) == [[]]
    [run] = await store.runs(job="a")
    assert (run.status, run.reason, run.dispatch_id) == ("skipped", "missed", None)
