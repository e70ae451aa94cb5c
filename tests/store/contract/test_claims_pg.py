"""Store contract with two writers on one database (two store instances on the same
URL, as two nodes): each queued dispatch is claimed once, a cron slot gets one
dispatch, a producer key binds one dispatch and an idempotency key one run, however
the two writers' ops interleave. On SQLite the file's lock takes turns; on PostgreSQL
the two writers' transactions really overlap (``FOR UPDATE SKIP LOCKED``, unique
indexes, ``ON CONFLICT``)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from shepherd.store.factory import open_store
from shepherd.store.ops import ClaimRun, ClaimRuns, InsertDispatches, RecordSlots, SlotItem
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, enqueue, new

pytestmark = pytest.mark.anyio


@pytest.fixture
async def other(store: Store, database: str) -> AsyncIterator[Store]:
    """A second store on ``store``'s database: another node's writer."""
    s = await open_store(database)
    try:
        yield s
    finally:
        await s.close(checkpoint=False)


async def _both(first: Any, second: Any) -> tuple[Any, Any]:
    """Run two coroutines at once; their results."""
    got: dict[int, Any] = {}

    async def run(k: int, coro: Any) -> None:
        got[k] = await coro

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    return got[0], got[1]


async def test_two_writers_claiming_one_queue_win_each_dispatch_once(
    store: Store, other: Store
) -> None:
    a = await add_job(store, "a")
    ids = [d for d, _ in await enqueue(store, *[new(a) for _ in range(300)])]
    rng = random.Random(14)

    async def drain(s: Store, name: str) -> list[tuple[int, int]]:
        order = ids[:]
        rng.shuffle(order)
        won: list[tuple[int, int]] = []
        for k in range(0, len(order), 25):
            part = order[k : k + 25]
            claims = [ClaimRun(dispatch_id=d, attempt=1) for d in part]
            got = await s.apply_one(ClaimRuns(claims, name, 3.0))
            assert 0 not in got  # no keys here: a lost claim is None
            won += [(d, r) for d, r in zip(part, got, strict=True) if r is not None]
        return won

    mine, theirs = await _both(drain(store, "n1"), drain(other, "n2"))
    counts = Counter(d for d, _ in mine + theirs)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
    run_ids = [r for _, r in mine + theirs]
    assert len(set(run_ids)) == len(run_ids)
    assert len(await store.runs(status="running", limit=1000)) == len(ids)
    for d, r in rng.sample(mine + theirs, 20):
        disp = await other.dispatch(d)
        assert disp is not None and (disp.status, disp.current_run_id) == ("running", r)
        runs = await other.runs(dispatch_id=d)
        assert [x.id for x in runs] == [r]


async def test_two_schedulers_recording_one_slot_make_one_dispatch(
    store: Store, other: Store
) -> None:
    a = await add_job(store, "a", next_run_at=60.0)

    def slots(expect: float | None, *, set_next: bool) -> RecordSlots:
        item = SlotItem(
            job_id=a,
            job_name="a",
            expect_next=expect,
            set_next=set_next,
            next_run_at=120.0,
            dispatches=[new(a, kind="schedule", slot=s, not_before=s) for s in (60.0, 120.0)],
        )
        return RecordSlots([item], ORIGIN, 61.0)

    # both planners still expect 60.0: the compare-and-set lets one through
    first, second = await _both(
        store.apply_one(slots(60.0, set_next=True)), other.apply_one(slots(60.0, set_next=True))
    )
    won, lost = sorted([first[0], second[0]], key=lambda x: x is None)
    assert lost is None and isinstance(won, list) and all(isinstance(w, tuple) for w in won)
    # both skip the compare-and-set: the unique index alone decides, slot by slot
    first, second = await _both(
        store.apply_one(slots(None, set_next=False)), other.apply_one(slots(None, set_next=False))
    )
    assert first[0] == second[0] == [None, None]  # the first pair already took both slots
    rows = await store.dispatches(job="a")
    assert sorted(d.slot or 0.0 for d in rows) == [60.0, 120.0]


async def test_two_schedulers_racing_on_new_slots_commit_each_once(
    store: Store, other: Store
) -> None:
    jobs = [await add_job(store, f"j{k}") for k in range(20)]

    def slots(order: list[int]) -> RecordSlots:
        items = [
            SlotItem(
                job_id=j,
                job_name=f"j{jobs.index(j)}",
                set_next=False,
                dispatches=[new(j, kind="schedule", slot=60.0, not_before=60.0)],
            )
            for j in order
        ]
        return RecordSlots(items, ORIGIN, 61.0)

    backwards = list(reversed(jobs))  # opposite orders: no deadlock either
    first, second = await _both(store.apply_one(slots(jobs)), other.apply_one(slots(backwards)))
    made = [r for item in first + second for r in item if r is not None]
    assert len(made) == len(jobs)
    assert sorted(d.job_id for d in await store.dispatches(limit=100)) == sorted(jobs)


async def test_a_producer_key_inserted_by_two_writers_binds_one_dispatch(
    store: Store, other: Store
) -> None:
    a = await add_job(store, "a")
    rows = [new(a, idempotency_key=f"K{k}") for k in range(30)]

    def insert(order: list[Any]) -> Any:
        return InsertDispatches(order, ORIGIN, 2.0)

    first, second = await _both(
        store.apply_one(insert(rows)), other.apply_one(insert(list(reversed(rows))))
    )
    second = list(reversed(second))
    for mine, theirs in zip(first, second, strict=True):
        ids = {x[0] if isinstance(x, tuple) else x for x in (mine, theirs)}
        assert len(ids) == 1 and None not in ids
        assert [isinstance(x, tuple) for x in (mine, theirs)].count(True) == 1
    assert len(await store.dispatches(job="a", limit=100)) == len(rows)


async def test_an_idempotency_key_claimed_by_two_writers_runs_once(
    store: Store, other: Store
) -> None:
    a = await add_job(store, "a")
    pairs = [await enqueue(store, new(a), new(a)) for _ in range(20)]

    def claims(k: int) -> ClaimRuns:
        return ClaimRuns(
            [
                ClaimRun(dispatch_id=p[k][0], attempt=1, idempotency_key=f"I{n}", job_id=a)
                for n, p in enumerate(pairs)
            ],
            ORIGIN,
            3.0,
        )

    first, second = await _both(store.apply_one(claims(0)), other.apply_one(claims(1)))
    for mine, theirs in zip(first, second, strict=True):
        assert sorted([mine, theirs], key=bool)[0] == 0 and (mine or theirs)
    assert len(await store.runs(status="running", limit=100)) == len(pairs)
    skipped = await store.dispatches(status="done", limit=100)
    assert len(skipped) == len(pairs) and {d.outcome for d in skipped} == {"skipped"}
