"""Store contract (both engines): the reads of jobs, dispatches and runs — keyset pages
and their filters, lookups by id, schedule states, counts."""

from __future__ import annotations

import pytest

from shepherd.store.ops import CancelDispatch, SetJobState
from shepherd.store.protocol import Store
from tests.store.contract.helpers import add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio


async def test_dispatch_pages_follow_ids_down_with_their_filters(store: Store) -> None:
    a, b = await add_job(store, "a"), await add_job(store, "b")
    ids = []
    for n in range(6):  # created at 10, 11 … 15; priorities critical / normal in turn
        row = new(a if n % 2 else b, "a" if n % 2 else "b", priority=0 if n % 3 == 0 else 2)
        [(d, _)] = await enqueue(store, row, now=10.0 + n)
        ids.append(d)
    newest = list(reversed(ids))
    assert [x.id for x in await store.dispatches(limit=4)] == newest[:4]
    assert [x.id for x in await store.dispatches(limit=4, before=newest[3])] == newest[4:]
    assert [x.id for x in await store.dispatches(job="a")] == [ids[5], ids[3], ids[1]]
    assert [x.id for x in await store.dispatches(priority="critical")] == [ids[3], ids[0]]
    assert await store.dispatches(priority="nonsense") == []
    assert [x.id for x in await store.dispatches(since=11.0, until=13.0)] == [ids[2], ids[1]]
    assert await store.dispatches(agent="nobody") == []
    run_id = await claim(store, ids[0])
    assert run_id and await store.apply_one(CancelDispatch(ids[1], 20.0)) == "cancelled"
    both = await store.dispatches(status=["running", "cancelled"])
    assert [(x.id, x.status) for x in both] == [(ids[1], "cancelled"), (ids[0], "running")]
    assert [x.id for x in await store.dispatches(status="queued", job="b", before=ids[4])] == [
        ids[2]
    ]


async def test_run_pages_follow_ids_down_with_their_filters(store: Store) -> None:
    a = await add_job(store, "a")
    rows = await enqueue(store, new(a), new(a), new(a))
    runs = []
    for n, (d, _) in enumerate(rows):
        run_id = await claim(store, d, now=20.0 + n)
        assert run_id
        runs.append(run_id)
    assert await finish(store, runs[0], rows[0][0]) == 0
    assert [r.id for r in await store.runs(limit=2)] == [runs[2], runs[1]]
    assert [r.id for r in await store.runs(before=runs[1])] == [runs[0]]
    assert [r.id for r in await store.runs(job="a", status=["ok"])] == [runs[0]]
    assert [r.id for r in await store.runs(status="running")] == [runs[2], runs[1]]
    assert [r.id for r in await store.runs(since=21.0)] == [runs[2], runs[1]]
    assert [r.id for r in await store.runs(until=21.0, dispatch_id=rows[0][0])] == [runs[0]]
    assert await store.runs(job="b") == [] and await store.runs(agent="nobody") == []
    assert await store.run(runs[2] + 100) is None


async def test_jobs_by_name_id_and_the_latest_slot_of_each(store: Store) -> None:
    a, b = await add_job(store, "a"), await add_job(store, "42")
    c = await add_job(store, "c")
    by_name, by_id, by_text = await store.job("a"), await store.job(a), await store.job(str(a))
    assert by_name is not None and by_name.spec.name == "a" and by_name == by_id == by_text
    named = await store.job("42")  # a name made of digits: the id or the name matches
    assert named is not None and named.id == b
    assert await store.job("nope") is None
    assert [j.spec.name for j in await store.jobs()] == ["42", "a", "c"]
    assert sorted(await store.jobs_by_id([a, c, c + 100])) == [a, c]
    assert await store.jobs_by_id([]) == {}
    slots = [new(a, kind="schedule", slot=60.0), new(a, kind="schedule", slot=120.0)]
    [(first, _), (second, _), _] = await enqueue(store, *slots, new(c, "c"))
    assert await store.apply_one(CancelDispatch(second, 5.0)) == "cancelled"
    assert await store.schedule_states([a, b, c]) == {a: "cancelled"}
    assert first != second


async def test_stats_count_dispatches_runs_and_jobs(store: Store) -> None:
    a = await add_job(store, "a")
    b = await add_job(store, "b")
    await store.apply_one(SetJobState(b, now=2.0, enabled=False))
    [(d1, _), (d2, _), _] = await enqueue(store, new(a), new(a), new(a))
    run_id = await claim(store, d1)
    assert run_id and await store.apply_one(CancelDispatch(d2, 5.0)) == "cancelled"
    stats = await store.stats()
    assert stats["dispatches"] == {
        "queued": 1, "awaiting_approval": 0, "running": 1, "done": 0, "cancelled": 1, "dead": 0,
    }  # fmt: skip
    assert (stats["runs_running"], stats["jobs"], stats["jobs_enabled"]) == (1, 2, 1)
    assert stats["approvals_pending"] == 0
    assert sorted(await store.queue_depth()) == [("queued", 2, "a", 1), ("running", 2, "a", 1)]
