"""The dispatcher shell over a real SQLite store and store writer: a wake-up of its own
never fails on a full mailbox (callers blocked in ``send`` keep it full)."""

from __future__ import annotations

from typing import cast

import anyio
import pytest

from shepherd.actors.dispatcher import Dispatcher, DispatcherConfig
from shepherd.actors.executors.host import Host
from shepherd.actors.messages import DispatcherMsg, Drain, Event, Poke
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Mailbox, Reply
from shepherd.actors.writer import StoreMsg, StoreWriter
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_a_full_mailbox_does_not_crash_the_dispatchers_own_wake(db_path: str) -> None:
    store = await SqliteStore.open(db_path)
    writer_mb: Mailbox[StoreMsg] = Mailbox("store", 100)
    mailbox: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 3)
    events: list[Event] = []
    dispatcher = Dispatcher(
        DispatcherConfig(instance="me", concurrency=2),
        store=store,
        writer=writer_mb.address(),
        mailbox=mailbox,
        executors={},
        clock=FakeClock(),
        emit=events.append,
        host=cast(Host, None),
    )
    caller = mailbox.address()
    for _ in range(mailbox.capacity):  # full before the (re)start's first pass
        caller.tell(Poke(dispatches=True))
    through = anyio.Event()

    async def blocked_caller() -> None:
        await caller.send(Poke(dispatches=True))  # waits for space
        through.set()

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(StoreWriter(store, writer_mb).run)
            tg.start_soon(blocked_caller)
            with anyio.fail_after(10):
                await tg.start(dispatcher.run)
                await through.wait()
                reply: Reply[int] = Reply()
                await caller.send(Drain(1.0, reply))
                assert await reply.wait() == 0
            stats = dispatcher.statistics()
            assert stats["reloads"] >= 1 and stats["store_errors"] == 0
            tg.cancel_scope.cancel()
    finally:
        await store.close()
