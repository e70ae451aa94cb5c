"""The scheduler fires slots only while it leads (``Store.lead_scheduler``).

- SQLite: the one runtime of the file always leads;
- PostgreSQL: a follower fires nothing, asks again every ``leader_poll``, and once the
  leader's connection is gone it takes over, reloads every job and fires what is due;
- two schedulers that both believe they lead (an overlap) still commit every slot
  exactly once: the compare-and-set on the job's next fire time and, past it, the
  ``(job, slot)`` unique index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from shepherd.actors.messages import DispatcherMsg, SchedulerMsg
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.actors.scheduler import Scheduler, SchedulerConfig
from shepherd.actors.writer import StoreWriter
from shepherd.runtime.jobs import save_op
from shepherd.store.models import JobSpec, Seconds
from shepherd.store.postgres.engine import PgStore
from shepherd.store.protocol import Store
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

T0 = 1_718_000_000.0


class AlwaysLeads(PgStore):
    """A node that believes it leads whatever the lock says: two of them overlap."""

    async def lead_scheduler(self, node: str) -> bool:
        return True


class Node:
    """One scheduler with its own store, writer and stub dispatcher inbox."""

    def __init__(self, name: str, store: Store, clock: FakeClock) -> None:
        self.store = store
        self.writer_mb: Mailbox[Any] = Mailbox("store", 1000)
        self.mailbox: Mailbox[SchedulerMsg] = Mailbox("scheduler", 1000)
        self.dispatcher_mb: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 1000)
        self.scheduler = Scheduler(
            SchedulerConfig(instance=name),
            store=store,
            writer=self.writer_mb.address(),
            mailbox=self.mailbox,
            dispatcher=self.dispatcher_mb.address(),
            clock=clock,
            emit=lambda event: None,
        )

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        await tg.start(StoreWriter(self.store, self.writer_mb).run)
        await tg.start(self.scheduler.run)


async def slots(store: Store, job: str) -> list[float | None]:
    return sorted(d.slot for d in await store.dispatches(job=job, limit=1000))


async def test_sqlite_always_leads(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    clock = FakeClock(wall=T0)
    try:
        await store.apply_one(save_op(JobSpec(name="tick", every=Seconds(1.0)), T0))
        node = Node("solo", store, clock)
        async with anyio.create_task_group() as tg:
            await node.start(tg)
            await clock.set_wall_when_blocked(T0 + 1.0)
            assert node.scheduler.statistics()["leader"] is True
            assert await slots(store, "tick") == [T0 + 1.0]
            tg.cancel_scope.cancel()
    finally:
        await store.close()


@pytest.fixture
async def exits() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def test_a_follower_fires_nothing_then_takes_over_when_the_leader_goes(
    pg_url: str, exits: AsyncExitStack
) -> None:
    clock = FakeClock(wall=T0)
    leader = await PgStore.open(pg_url)
    exits.push_async_callback(leader.close)
    store = await PgStore.open(pg_url)
    exits.push_async_callback(store.close)
    assert await leader.lead_scheduler("node-a") is True
    await store.apply_one(save_op(JobSpec(name="tick", every=Seconds(1.0)), T0))
    node = Node("node-b", store, clock)
    async with anyio.create_task_group() as tg:
        await node.start(tg)
        for step in range(1, 4):
            await clock.set_wall_when_blocked(T0 + step)
        assert node.scheduler.statistics()["leader"] is False
        assert await slots(store, "tick") == []
        await leader.close()  # its connection goes, the lock with it
        step = 3
        while not node.scheduler.statistics()["leader"]:
            assert step < 30, "the follower never took over"
            step += 1
            await clock.set_wall_when_blocked(T0 + step)
        fired = await slots(store, "tick")
        assert fired == [T0 + step]  # the latest due slot, on time; earlier ones missed
        assert node.scheduler.statistics()["leadership_changes"] == 1
        tg.cancel_scope.cancel()


async def test_two_overlapping_leaders_fire_each_slot_once(
    pg_url: str, exits: AsyncExitStack
) -> None:
    clock = FakeClock(wall=T0)
    a = await AlwaysLeads.open(pg_url)
    exits.push_async_callback(a.close)
    b = await AlwaysLeads.open(pg_url)
    exits.push_async_callback(b.close)
    await a.apply_one(save_op(JobSpec(name="tick", every=Seconds(1.0)), T0))
    nodes = [Node("node-a", a, clock), Node("node-b", b, clock)]
    async with anyio.create_task_group() as tg:
        for node in nodes:
            await node.start(tg)
        for step in range(1, 11):
            await clock.set_wall_when_blocked(T0 + step)
        assert await slots(a, "tick") == [T0 + s for s in range(1, 11)]
        stats = [n.scheduler.statistics() for n in nodes]
        assert sum(s["fired"] for s in stats) == 10
        # every slot was tried by both; the loser lost on the next fire time or the index
        assert sum(s["stale"] + s["duplicates"] for s in stats) == 10, stats
        tg.cancel_scope.cancel()
