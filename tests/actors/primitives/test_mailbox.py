"""Mailboxes: a capacity chosen per mailbox, and what a full one does."""

from __future__ import annotations

import anyio
import pytest

from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.store.errors import ConfigError, MailboxClosed, MailboxFull

pytestmark = pytest.mark.anyio


def test_every_mailbox_chooses_its_capacity() -> None:
    with pytest.raises(TypeError):
        Mailbox("pruner")  # type: ignore[call-arg]
    assert Mailbox("pruner", 16).statistics()["capacity"] == 16
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="mailbox 'pruner'") as info:
            Mailbox("pruner", bad)  # type: ignore[arg-type]
        assert info.value.field == "capacity"


async def test_tell_on_a_full_mailbox_raises_and_queues_nothing() -> None:
    mailbox: Mailbox[int] = Mailbox("router", 2)
    address = mailbox.address()
    address.tell(1)
    address.tell(2)
    with pytest.raises(MailboxFull, match="'router' is full"):
        address.tell(3)
    assert mailbox.depth == 2
    assert mailbox.receive_nowait() == 1
    address.tell(4)  # room again
    assert [mailbox.receive_nowait(), mailbox.receive_nowait()] == [2, 4]


async def test_send_on_a_full_mailbox_waits_for_room_in_order() -> None:
    mailbox: Mailbox[int] = Mailbox("dispatcher", 1)
    address = mailbox.address()
    address.tell(0)
    sent: list[int] = []

    async def sender(n: int) -> None:
        await address.send(n)
        sent.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender, 1)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(sender, 2)
        await anyio.wait_all_tasks_blocked()
        assert sent == [] and mailbox.depth == 1  # both wait: back-pressure
        got = [await mailbox.receive() for _ in range(3)]
    assert got == [0, 1, 2] and sent == [1, 2]


async def test_tell_to_a_gone_actor_raises_closed() -> None:
    mailbox: Mailbox[int] = Mailbox("health", 4)
    address = mailbox.address()
    mailbox.close()
    with pytest.raises(MailboxClosed, match="'health' is not receiving"):
        address.tell(1)
    with pytest.raises(MailboxClosed):
        await address.send(1)
