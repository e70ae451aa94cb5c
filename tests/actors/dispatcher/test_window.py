"""The ready queue as a window of the queue's head, loop-free: what it keeps of what
arrives, that it never pops past its horizon, and that trimming keeps it bounded."""

from __future__ import annotations

from typing import cast

import pytest

from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.actors.dispatcher.loader import Loader
from shepherd.actors.dispatcher.ready import BOTTOM, ReadyQueue
from shepherd.store.models import Dispatch, JobRow, JobSpec, priority_rank
from shepherd.store.protocol import Store
from shepherd.store.shared.window import LAST_SEQ, in_lane
from tests.actors.dispatcher.helpers import entry


def drain(q: ReadyQueue) -> list[int]:
    out = []
    while (e := q.pop_ready()) is not None:
        q.take(e.id)
        out.append(e.id)
    return out


def test_an_arrival_is_kept_only_when_it_sorts_within_the_cursors() -> None:
    q = ReadyQueue(window=4)
    q.horizon, q.later = (2, 5.0, 50), (100.0, 7)
    q.add(entry(1, priority=1, seq=90), now=10.0)  # a higher rank: ahead of the tail
    q.add(entry(2, priority=2, not_before=5.0, seq=49), now=10.0)  # just ahead
    q.add(entry(3, priority=2, not_before=5.0, seq=51), now=10.0)  # just past: the store's
    q.add(entry(4, not_before=100.0, seq=7), now=10.0)  # at the later cursor: kept
    q.add(entry(5, not_before=100.0, seq=8), now=10.0)  # past it
    assert [i for i in range(1, 6) if i in q] == [1, 2, 4]


def test_nothing_due_is_kept_before_the_first_refill() -> None:
    q = ReadyQueue(window=4)
    q.horizon = BOTTOM
    q.add(entry(1, priority=0), now=10.0)
    assert 1 not in q


def test_a_pop_stops_at_the_horizon_and_says_starved() -> None:
    q = ReadyQueue(window=4)
    q.add(entry(1, seq=1), now=0.0)
    q.add(entry(2, seq=9, not_before=5.0), now=0.0)  # delayed, promoted past the horizon
    q.horizon = (2, 0.0, 1)
    q.promote(5.0)
    assert drain(q) == [1] and q.starved and 2 in q
    q.horizon = None  # a refill read on past it
    assert drain(q) == [2] and not q.starved


def test_an_empty_ready_heap_short_of_the_store_is_starved() -> None:
    q = ReadyQueue(window=4)
    q.horizon = (2, 0.0, 1)
    assert q.pop_ready() is None and q.starved
    q.horizon = None
    assert q.pop_ready() is None and not q.starved


def test_the_later_cursor_is_a_timer() -> None:
    q = ReadyQueue(window=4)
    q.later = (30.0, 3)
    assert q.next_wake() == 30.0
    q.add(entry(1, not_before=20.0), now=0.0)
    assert q.next_wake() == 20.0
    q.later = None
    q.take(1)
    assert q.next_wake() == 20.0  # a stale item: one pass that finds nothing


def test_arrivals_ahead_of_the_tail_are_trimmed_back_to_the_window() -> None:
    q = ReadyQueue(window=4)  # complete: every arrival is kept, until twice the window
    for i in range(1, 10):
        q.add(entry(i, seq=i), now=0.0)
    assert len(q) == 4 and q.horizon == (2, 0.0, 4)  # the tail left for the store
    q.add(entry(10, priority=0, seq=10), now=0.0)  # ahead of the tail: kept
    q.add(entry(11, seq=11), now=0.0)  # past it: the store's
    assert drain(q) == [10, 1, 2, 3, 4] and q.starved


def test_trimming_keeps_what_was_deferred_here_and_every_waiter() -> None:
    q = ReadyQueue(window=2)
    for i in range(1, 4):
        q.add(entry(i, seq=i), now=0.0)
    e1, e2 = q.pop_ready(), q.pop_ready()
    assert e1 is not None and e2 is not None
    q.defer(e1, 50.0)  # rate-limited: its row still says 0.0
    q.park("job:1", e2)
    for i in range(4, 12):
        q.add(entry(i, seq=i), now=0.0)
    q.add(entry(20, seq=20, not_before=60.0), now=0.0)
    assert 1 in q and 2 in q and len(q) <= 2 + 2 * 2 + 1
    q.later = (0.0, 0)  # future arrivals past the cursor stay in the store
    for i in range(30, 40):
        q.add(entry(i, seq=i, not_before=70.0), now=0.0)
    assert not any(i in q for i in range(30, 40)) and 1 in q
    q.later = None
    for i in range(40, 50):
        q.add(entry(i, seq=i, not_before=70.0 + i), now=0.0)
    assert 1 in q and sum(i in q for i in range(40, 50)) <= 4
    assert q.later is not None and q.later <= (70.0 + 49, 49)


def test_a_key_with_too_many_waiters_keeps_a_window_of_them_and_rewinds_when_dry() -> None:
    q = ReadyQueue(window=2)
    for i in range(1, 10):
        q.add(entry(i, seq=i), now=0.0)
        e = q.pop_ready()
        assert e is not None
        q.park("pool:p", e)
    assert [i for i in range(1, 10) if i in q] == [1, 2]  # 9 > 4 windows: the first kept
    assert q.unpark_one("pool:p") == 1 and not q.rewind
    assert q.unpark_one("pool:p") == 2 and q.rewind  # dry: the loader reads the head again
    for i in range(20, 30):  # a job key is never spilled (max_queued counts its waiters)
        q.add(entry(i, seq=i), now=0.0)
        e = q.pop_ready()
        assert e is not None
        q.park("job:1", e)
    assert q.parked.count("job:1") == 10


class WindowStore:
    """A store double serving the window reads from a list of queued rows."""

    def __init__(self, rows: list[Dispatch]) -> None:
        self.rows = rows
        self.reads: list[str] = []

    async def jobs(self) -> list[JobRow]:
        return [JobRow(id=1, spec=JobSpec(name="j1", target="t"))]

    async def queued_ready(
        self,
        after: tuple[int, float, int] | None,
        *,
        now: float,
        limit: int,
        lane: tuple[int, int] | None = None,
    ) -> list[Dispatch]:
        self.reads.append("ready" if lane is None else f"ready {lane[0]}/{lane[1]}")
        due = sorted((_key(d), d) for d in self.rows if d.not_before <= now)
        due = [(k, d) for k, d in due if in_lane(k[0], d.seq, lane)]
        return [d for k, d in due if after is None or k > after][:limit]

    async def queued_since(
        self, after_seq: int, *, exclude_origin: str | None = None
    ) -> list[Dispatch]:
        self.reads.append("since")
        return [d for d in sorted(self.rows, key=lambda d: d.seq) if d.seq > after_seq]

    async def queued_later(self, after: tuple[float, int], *, limit: int) -> list[Dispatch]:
        self.reads.append("later")
        by_time = sorted(((d.not_before, d.seq), d) for d in self.rows)
        return [d for k, d in by_time if k > after][:limit]


def _key(d: Dispatch) -> tuple[int, float, int]:
    return (priority_rank(d.priority), d.not_before, d.seq)


def row(dispatch_id: int, priority: str = "normal", not_before: float = 0.0) -> Dispatch:
    return Dispatch(
        id=dispatch_id, seq=dispatch_id, job_id=1, job_name="j1", kind="enqueue",
        status="queued", priority=priority, not_before=not_before, expires_at=None,
        attempt=0, max_attempts=3, payload=None, idempotency_key=None, slot=None,
        parent_run_id=None, created_at=0.0, updated_at=0.0,
    )  # fmt: skip


def loader_over(rows: list[Dispatch], now: list[float]) -> tuple[Loader, ReadyQueue, WindowStore]:
    """A loader whose entries go to the queue at ``now[0]`` (the batch's clock)."""
    store = WindowStore(rows)
    q = ReadyQueue(window=4)
    loader = Loader(
        store=cast(Store, store),
        instance="me",
        jobs=JobTable(),
        queue=q,
        add=lambda e: q.add(e, now[0]),
        counters={"reloads": 0, "lanes": 0},
    )
    q.horizon, q.later = BOTTOM, (now[0], LAST_SEQ)
    return loader, q, store


@pytest.mark.anyio
async def test_a_refill_reads_a_page_past_the_horizon_and_runs_the_queue_in_order() -> None:
    rows = [row(i, priority=("low", "normal", "high")[i % 3]) for i in range(1, 20)]
    loader, q, store = loader_over(rows, [10.0])
    await loader.jobs()
    out: list[int] = []
    while True:
        await loader.refill(10.0)
        assert len(q) <= 4
        got = drain(q)
        if not got:
            break
        out += got
    assert out == [d.id for d in sorted(rows, key=_key)]
    assert q.horizon is None and q.later is None and store.reads.count("ready") <= 19 // 2 + 2


@pytest.mark.anyio
async def test_future_rows_that_came_due_ahead_of_the_horizon_are_read_page_by_page() -> None:
    backlog = [row(i) for i in range(1, 11)]  # normal, due
    urgent = [row(i, priority="critical", not_before=50.0) for i in range(11, 21)]
    now = [10.0]
    loader, q, store = loader_over(backlog + urgent, now)
    await loader.jobs()
    await loader.refill(10.0)
    assert drain(q)[:2] == [1, 2]  # the head of the normal backlog
    assert q.next_wake() == 50.0  # the later cursor's time (its page was held)
    store.reads.clear()
    now[0] = 60.0
    q.add(entry(99, priority=2, seq=99), now=60.0)  # past the horizon: not kept
    assert 99 not in q
    q.promote(60.0)
    await loader.refill(60.0)
    first = drain(q)
    assert first[:4] == [11, 12, 13, 14]  # critical ones, all ahead of the horizon
    await loader.refill(60.0)
    out = first + drain(q)
    while q.starved or q.later is not None:
        await loader.refill(60.0)
        out += drain(q)
    assert out[: len(urgent)] == [d.id for d in urgent]


async def _run_all(loader: Loader, q: ReadyQueue, store: WindowStore, now: float) -> list[int]:
    """Refill and drain until nothing is left, each drained row leaving the store (a
    claim); the ids in the order they were taken."""
    out: list[int] = []
    while True:
        await loader.refill(now)
        got = drain(q)
        if not got:
            return out
        out += got
        store.rows = [d for d in store.rows if d.id not in got]


@pytest.mark.anyio
async def test_a_node_that_lost_claims_keeps_to_its_lane_then_takes_the_rest() -> None:
    urgent = [row(i, priority="high") for i in (1, 2)]
    backlog = [row(i) for i in range(3, 15)]
    loader, q, store = loader_over(urgent + backlog, [10.0])
    await loader.jobs()
    await loader.refill(10.0)
    assert [e.id for e in q.held()] == [1, 2, 3, 4]
    loader.compete(1, 2)  # claims lost to another node: seq % 2 == 1 from now on
    assert loader.lane == (1, 2) and [e.id for e in q.held()] == [1, 2, 3]  # 4 left
    store.reads.clear()
    out = await _run_all(loader, q, store, 10.0)
    odd = [d.id for d in backlog if d.id % 2 == 1]
    assert out[: 2 + len(odd)] == [1, 2, *odd]  # high ones whatever their lane, then its own
    assert store.reads[0] == "ready 1/2"
    # its lane ran dry: the whole queue again, from the head, in order
    assert out[2 + len(odd) :] == [d.id for d in backlog if d.id % 2 == 0]
    assert loader.lane is None and "ready" in store.reads


@pytest.mark.anyio
async def test_arrivals_of_another_lane_are_announced_not_held() -> None:
    loader, q, store = loader_over([], [10.0])
    await loader.jobs()
    loader.compete(0, 2)
    q.horizon, q.starved = (3, 0.0, 1), False  # its lane's backlog of low rows held
    store.rows = [row(i) for i in range(2, 8)] + [row(9, priority="critical")]
    loader.fresh = []
    await loader.queued(1, exclude_own=True)
    assert sorted(e.id for e in q.held()) == [2, 4, 6, 9]  # ahead of the horizon, its own
    assert [e.id for e in loader.fresh] == [2, 3, 4, 5, 6, 7, 9]  # every one announced
    assert loader.seq == 9


def test_a_lane_follows_the_cluster_and_a_node_alone_has_none() -> None:
    loader, q, _ = loader_over([], [10.0])
    loader.compete(0, 1)
    assert loader.lane is None  # one node: nobody to lose claims to
    loader.relane(0, 2)
    assert loader.lane is None  # no lane kept: none drawn
    loader.compete(0, 2)
    loader.relane(2, 3)
    assert loader.lane == (2, 3) and q.horizon == BOTTOM and q.starved
    loader.relane(0, 1)
    assert loader.lane is None
