"""PostgreSQL only: what another session's open transaction does to a claim, a slot
and a producer key (the cases two nodes meet, made deterministic by holding the other
node's transaction open on a plain asyncpg connection).

- a queued dispatch whose row another transaction holds is not waited for: the claim
  answers None for it at once (``FOR UPDATE SKIP LOCKED``) and wins it later;
- a slot or a producer key another transaction has inserted but not committed: the
  insert waits for it, then the unique index decides (no second dispatch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

from shepherd.store.factory import open_store
from shepherd.store.ops import ClaimRun, ClaimRuns, InsertDispatches, RecordSlots, SlotItem
from shepherd.store.protocol import Store
from tests.helpers import eventually
from tests.store.contract.helpers import ORIGIN, add_job, enqueue, new

pytestmark = pytest.mark.anyio

_INSERT = (
    "INSERT INTO dispatches (job_id, job_name, kind, status, priority, not_before,"
    " max_attempts, created_at, updated_at, slot, producer_key, idempotency_key)"
    " VALUES ($1, 'a', $2, 'queued', 2, 0, 3, 1, 1, $3, $4, $4) RETURNING id"
)


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    s = await open_store(pg_url)
    try:
        yield s
    finally:
        await s.close(checkpoint=False)


@pytest.fixture
async def peer(store: Store, pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Another node's session on the same schema (``store`` created it)."""
    base, _, query = pg_url.partition("?search_path=")
    conn = await asyncpg.connect(base, server_settings={"search_path": query})
    try:
        yield conn
    finally:
        await conn.close()


async def _waiting_on_a_lock(peer: asyncpg.Connection) -> bool:
    n = await peer.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'"
    )
    return bool(n)


async def test_a_dispatch_held_by_another_transaction_is_not_won_nor_waited_for(
    store: Store, peer: asyncpg.Connection
) -> None:
    a = await add_job(store, "a")
    [(held, _), (free, _)] = await enqueue(store, new(a), new(a))
    claims = [ClaimRun(dispatch_id=d, attempt=1) for d in (held, free)]
    tr = peer.transaction()
    await tr.start()
    await peer.execute("SELECT 1 FROM dispatches WHERE id = $1 FOR UPDATE", held)
    with anyio.fail_after(60):  # a claim that waited would wait for ever
        got = await store.apply_one(ClaimRuns(claims, ORIGIN, 3.0))
    await tr.rollback()
    assert got[0] is None and isinstance(got[1], int) and got[1] > 0
    disp = await store.dispatch(held)
    assert disp is not None and disp.status == "queued"
    [again] = await store.apply_one(ClaimRuns(claims[:1], ORIGIN, 4.0))
    assert isinstance(again, int) and again not in (0, got[1])


async def _racing(
    store: Store, peer: asyncpg.Connection, op: Any, held_sql: tuple[Any, ...]
) -> tuple[Any, int]:
    """Apply ``op`` while ``peer`` holds an uncommitted insert (``held_sql``); commit
    the peer once the op waits on it; the op's result and the peer's row id."""
    tr = peer.transaction()
    await tr.start()
    peer_id = await peer.fetchval(*held_sql)
    got: list[Any] = []

    async def apply() -> None:
        got.append(await store.apply_one(op))

    async with anyio.create_task_group() as tg:
        tg.start_soon(apply)
        await eventually(lambda: _waiting_on_a_lock(peer), what="the op to wait on the peer")
        await tr.commit()
    return got[0], int(peer_id)


async def test_a_slot_another_node_is_committing_is_not_fired_twice(
    store: Store, peer: asyncpg.Connection
) -> None:
    a = await add_job(store, "a")
    item = SlotItem(
        job_id=a,
        job_name="a",
        set_next=False,
        dispatches=[new(a, kind="schedule", slot=60.0, not_before=60.0)],
    )
    got, peer_id = await _racing(
        store, peer, RecordSlots([item], ORIGIN, 61.0), (_INSERT, a, "schedule", 60.0, None)
    )
    assert got == [[None]]
    assert [d.id for d in await store.dispatches(job="a")] == [peer_id]


async def test_a_producer_key_another_node_is_committing_answers_its_dispatch(
    store: Store, peer: asyncpg.Connection
) -> None:
    a = await add_job(store, "a")
    op = InsertDispatches([new(a, idempotency_key="K")], ORIGIN, 2.0)
    got, peer_id = await _racing(store, peer, op, (_INSERT, a, "enqueue", None, "K"))
    assert got == [peer_id]
    assert [d.id for d in await store.dispatches(job="a")] == [peer_id]
