"""The scheduler's leadership on PostgreSQL (``store.postgres.leader``): one leader per
database at a time, through a session advisory lock on a dedicated connection.

- one node leads, the others do not, until the leader's connection goes: closing its
  store, or its backend terminated (what the rescue of an expired node does);
- ``scheduler_leader`` names the lock's real holder, from any store;
- two leaders that overlap still commit each (job, slot) once: the unique index
  ``dispatches_slot`` is the last word (``RecordSlots`` inserts ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import asyncpg
import pytest

from shepherd.runtime.jobs import save_op
from shepherd.store.models import JobSpec, Seconds
from shepherd.store.ops import NewDispatch, RecordSlots, SlotItem
from shepherd.store.postgres.engine import PgStore
from shepherd.store.postgres.leader import Leadership

pytestmark = pytest.mark.anyio

T0 = 1_718_000_000.0


@asynccontextmanager
async def stores(url: str, n: int) -> AsyncIterator[list[PgStore]]:
    opened = [await PgStore.open(url) for _ in range(n)]
    try:
        yield opened
    finally:
        for s in opened:
            await s.close()


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.02)


async def test_one_leader_at_a_time_and_a_follower_takes_over_when_it_closes(
    pg_url: str,
) -> None:
    async with stores(pg_url, 3) as (a, b, c):
        assert await a.lead_scheduler("node-a") is True
        assert await b.lead_scheduler("node-b") is False
        assert await c.lead_scheduler("node-c") is False
        assert await a.lead_scheduler("node-a") is True  # kept while held
        assert await c.scheduler_leader() == "node-a"
        await a.close()
        await until(lambda: b.lead_scheduler("node-b"))  # b takes over
        assert await c.lead_scheduler("node-c") is False
        assert await c.scheduler_leader() == "node-b"


async def test_a_terminated_leader_backend_loses_the_lock(pg_url: str, pg_database: str) -> None:
    async with stores(pg_url, 2) as (a, b):
        assert await a.lead_scheduler("node-a") is True
        assert await b.lead_scheduler("node-b") is False
        admin = await asyncpg.connect(pg_database)
        try:  # what a rescue does to an expired node's backends
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name LIKE '%node-a' AND datname = current_database()"
            )
        finally:
            await admin.close()
        assert killed == 1
        await until(lambda: b.lead_scheduler("node-b"))  # the freed lock
        assert await a.lead_scheduler("node-a") is False  # it notices, it does not fire
        assert await a.scheduler_leader() == "node-b"


class _OutOfStep:
    """A connection whose backend was terminated mid-talk: the driver is out of step."""

    terminated = False

    def is_closed(self) -> bool:
        return False

    async def fetchval(self, *args: object, **kw: object) -> object:
        raise asyncpg.InternalClientError("cannot switch to state 11; another operation")

    def terminate(self) -> None:
        self.terminated = True


async def test_a_driver_out_of_step_after_a_termination_is_leadership_lost() -> None:
    """Seen once when the leader's backend was terminated: the next ``SELECT 1`` raised
    ``InternalClientError``, not a connection error. It is a lost lock, not a crash."""
    lead = Leadership("postgresql://nowhere.invalid/db", "s")
    conn = _OutOfStep()
    lead._conn, lead._node, lead.held = conn, "node-a", True  # type: ignore[assignment]
    assert await lead.lead("node-a") is False
    assert not lead.held and conn.terminated and lead.changes == 1


async def test_no_leader_is_none(pg_url: str) -> None:
    async with stores(pg_url, 1) as (a,):
        assert await a.scheduler_leader() is None


async def test_overlapping_leaders_commit_a_slot_once(pg_url: str) -> None:
    """Two leaders (each believes it leads) commit the same slot at the same moment,
    past the compare-and-set (a bookkeeping item): one dispatch, the other gets None."""
    async with stores(pg_url, 2) as (a, b):
        await a.apply_one(save_op(JobSpec(name="tick", every=Seconds(1.0)), T0))
        job = await a.job("tick")
        assert job is not None
        slot = T0 + 1.0

        def op(origin: str) -> RecordSlots:
            d = NewDispatch(
                job_id=job.id,
                job_name=job.name,
                kind="schedule",
                priority=2,
                not_before=slot,
                max_attempts=1,
                slot=slot,
            )
            item = SlotItem(job_id=job.id, job_name=job.name, set_next=False, dispatches=[d])
            return RecordSlots([item], origin, slot)

        results: dict[str, object] = {}

        async def commit(store: PgStore, origin: str) -> None:
            results[origin] = await store.apply_one(op(origin))

        async with anyio.create_task_group() as tg:
            tg.start_soon(commit, a, "node-a")
            tg.start_soon(commit, b, "node-b")
        dispatches = await a.dispatches(job="tick")
        assert [d.slot for d in dispatches] == [slot]
        firsts = sorted(str(r[0][0] is None) for r in results.values())  # type: ignore[index]
        assert firsts == ["False", "True"], results
