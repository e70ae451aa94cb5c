"""Store contract: the dispatcher's window reads (``queued_ready``, ``queued_later``,
``newest_seq``): pages of the queue's head in index order past a keyset cursor, the
same on every engine."""

from __future__ import annotations

import pytest

from shepherd.store.models import priority_rank
from shepherd.store.ops import CancelDispatch
from shepherd.store.protocol import Store
from shepherd.store.shared.window import LAST_SEQ, SPLIT_FROM
from tests.store.contract.helpers import add_job, claim, enqueue, new

pytestmark = pytest.mark.anyio

NOW = 100.0


async def _backlog(store: Store) -> dict[int, tuple[int, float, int]]:
    """Queued rows of mixed ranks and not-befores; their ready keys by id."""
    a = await add_job(store, "a")
    rows = [
        new(a, priority=2, not_before=50.0),
        new(a, priority=0, not_before=90.0),
        new(a, priority=2, not_before=10.0),
        new(a, priority=4, not_before=0.0),
        new(a, priority=0, not_before=500.0),  # critical, but not due before 500
        new(a, priority=2, not_before=10.0),  # a tie on not-before: seq decides
        new(a, priority=1, not_before=200.0),
        new(a, priority=3, not_before=NOW),  # due exactly now
    ]
    got = await enqueue(store, *rows)
    return {d: (r.priority, r.not_before, seq) for (d, seq), r in zip(got, rows, strict=True)}


async def test_ready_pages_come_in_heap_order_past_the_cursor_and_only_due(store: Store) -> None:
    keys = await _backlog(store)
    due = sorted((k, d) for d, k in keys.items() if k[1] <= NOW)
    first = await store.queued_ready(None, now=NOW, limit=3)
    assert [d.id for d in first] == [d for _, d in due[:3]]
    last = first[-1]
    cursor = (priority_rank(last.priority), last.not_before, last.seq)
    rest = await store.queued_ready(cursor, now=NOW, limit=100)
    assert [d.id for d in rest] == [d for _, d in due[3:]]
    assert await store.queued_ready(due[-1][0], now=NOW, limit=100) == []
    later = await store.queued_ready(None, now=1000.0, limit=100)  # all due by then
    assert [d.id for d in later] == [d for _, d in sorted((k, d) for d, k in keys.items())]


async def test_a_lane_reads_its_share_of_the_split_ranks_and_every_urgent_row(
    store: Store,
) -> None:
    keys = await _backlog(store)
    due = sorted((k, d) for d, k in keys.items() if k[1] <= 1000.0)
    seen: list[int] = []
    for index in range(3):
        got = [d.id for d in await store.queued_ready(None, now=1000.0, limit=100, lane=(index, 3))]
        mine = [d for k, d in due if k[0] < SPLIT_FROM or k[2] % 3 == index]
        assert got == mine  # in heap order, critical and high rows in every lane
        seen += got
    assert set(seen) == set(keys)  # the lanes cover the queue
    split = [d for k, d in due if k[0] >= SPLIT_FROM]
    first = await store.queued_ready(None, now=1000.0, limit=100, lane=(0, 1))
    assert [d.id for d in first] == [d for _, d in due] and split  # a lane of one: all
    mine = [(k, d) for k, d in due if k[0] >= SPLIT_FROM and k[2] % 2 == 1]
    cursor = mine[0][0]
    rest = await store.queued_ready(cursor, now=1000.0, limit=100, lane=(1, 2))
    assert [d.id for d in rest] == [d for _, d in mine[1:]]  # past the cursor, in the lane


async def test_ready_pages_skip_rows_no_longer_queued(store: Store) -> None:
    keys = await _backlog(store)
    head = min(keys, key=keys.__getitem__)
    assert await claim(store, head)
    second = sorted(keys, key=keys.__getitem__)[1]
    assert await store.apply_one(CancelDispatch(second, NOW)) == "cancelled"
    got = [d.id for d in await store.queued_ready(None, now=1000.0, limit=100)]
    assert head not in got and second not in got and len(got) == len(keys) - 2


async def test_later_pages_come_by_not_before_then_seq_past_the_cursor(store: Store) -> None:
    keys = await _backlog(store)
    future = sorted(((k[1], k[2]), d) for d, k in keys.items() if k[1] > NOW)
    page = await store.queued_later((NOW, LAST_SEQ), limit=1)
    assert [d.id for d in page] == [future[0][1]]
    rest = await store.queued_later((page[0].not_before, page[0].seq), limit=10)
    assert [d.id for d in rest] == [d for _, d in future[1:]]
    everything = await store.queued_later((-1.0, 0), limit=100)  # due ones too, by time
    assert [d.id for d in everything] == [
        d for _, d in sorted(((k[1], k[2]), d) for d, k in keys.items())
    ]


async def test_newest_seq_is_the_highest_seq_taken(store: Store) -> None:
    assert await store.newest_seq() == 0
    keys = await _backlog(store)
    newest = max(k[2] for k in keys.values())
    assert await store.newest_seq() == newest
    assert all(d.seq <= newest for d in await store.queued_since(newest))
