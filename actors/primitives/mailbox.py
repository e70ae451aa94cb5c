"""Bounded typed mailboxes over anyio memory object streams, and reply slots.

A ``Mailbox[M]`` belongs to one actor, which receives from it. Its capacity (how many
messages may wait) is chosen by whoever creates it, per actor; there is no default.
Others hold an ``Address[M]`` (the send side) and choose how to send:

- ``tell(msg)``: synchronous; raises ``MailboxFull`` (naming the mailbox) when
  ``capacity`` messages are waiting, and ``MailboxClosed`` when the actor has gone. The
  message is not queued: the sender decides (count it, drop it, or ``send`` instead).
- ``await send(msg)``: waits for space (back-pressure), in arrival order.
- ``await ask(address, lambda reply: Request(..., reply=reply))``: send a request that
  carries a ``Reply`` slot and wait for the answer. Only down the tree or to the store.

Receiving: ``async for msg in mailbox`` ends when every address is closed;
``drain(first, limit)`` collects what is already waiting so an actor handles a burst
as one batch. ``serving(mailbox)`` gives an actor's loop its own address and a task group
for its helpers; both end with the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shepherd.actors.primitives.clock import Clock
from shepherd.store.errors import ConfigError, MailboxClosed, MailboxFull

__all__ = ["Address", "Mailbox", "Reply", "ask", "receive_by", "serving"]

M = TypeVar("M")
T = TypeVar("T")


class Reply(Generic[T]):
    """A one-shot answer slot carried inside a request message."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def set(self, value: T) -> None:
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    @property
    def failed(self) -> bool:
        return self._error is not None

    async def wait(self) -> T:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<Reply {'done' if self.done else 'pending'}>"


class Address(Generic[M]):
    """The send side of a mailbox; cheap to copy, closable per holder."""

    __slots__ = ("_name", "_stream")

    def __init__(self, name: str, stream: MemoryObjectSendStream[M]) -> None:
        self._name = name
        self._stream = stream

    @property
    def name(self) -> str:
        return self._name

    def tell(self, msg: M) -> None:
        try:
            self._stream.send_nowait(msg)
        except anyio.WouldBlock:
            raise MailboxFull(f"mailbox of {self._name!r} is full") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise MailboxClosed(f"{self._name!r} is not receiving") from None

    async def send(self, msg: M) -> None:
        try:
            await self._stream.send(msg)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise MailboxClosed(f"{self._name!r} is not receiving") from None

    def clone(self) -> Address[M]:
        return Address(self._name, self._stream.clone())

    def close(self) -> None:
        self._stream.close()

    def __repr__(self) -> str:
        return f"<Address {self._name}>"


class Mailbox(Generic[M]):
    """The receive side, owned by exactly one actor."""

    def __init__(self, name: str, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"mailbox {name!r}: must be an integer >= 1", field="capacity")
        self.name = name
        self.capacity = capacity
        send: MemoryObjectSendStream[M]
        recv: MemoryObjectReceiveStream[M]
        send, recv = anyio.create_memory_object_stream[M](capacity)
        self._send = send
        self._recv = recv
        self.received = 0

    def address(self) -> Address[M]:
        """A new address (a cloned send stream). The mailbox keeps its own until closed."""
        return Address(self.name, self._send.clone())

    def close_own_address(self) -> None:
        """Drop the mailbox's own send side so ``async for`` ends with the last sender."""
        self._send.close()

    def close(self) -> None:
        self._send.close()
        self._recv.close()

    async def receive(self) -> M:
        # What is already waiting is taken at once: the stream's own receive yields to the
        # loop first (a checkpoint, and anyio's backend look-up) even when it need not
        # wait. An actor still yields whenever its inbox runs dry, and its loop awaits
        # its store writes and replies, so a busy inbox cannot starve the others.
        try:
            msg = self._recv.receive_nowait()
        except anyio.WouldBlock:
            msg = await self._recv.receive()
        self.received += 1
        return msg

    def receive_nowait(self) -> M:
        msg = self._recv.receive_nowait()
        self.received += 1
        return msg

    def drain(self, first: M, limit: int = 1000) -> list[M]:
        """``first`` plus whatever else is already waiting, up to ``limit`` messages."""
        batch = [first]
        while len(batch) < limit:
            try:
                batch.append(self._recv.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        self.received += len(batch) - 1
        return batch

    def __aiter__(self) -> AsyncIterator[M]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[M]:
        try:
            while True:
                yield await self.receive()
        except anyio.EndOfStream:
            return

    @property
    def depth(self) -> int:
        return self._recv.statistics().current_buffer_used

    def statistics(self) -> dict[str, Any]:
        s = self._recv.statistics()
        return {
            "depth": s.current_buffer_used,
            "capacity": self.capacity,
            "received": self.received,
            "senders": s.open_send_streams,
            "waiting": s.tasks_waiting_receive,  # 1: its actor is blocked in receive
        }

    def __repr__(self) -> str:
        return f"<Mailbox {self.name} {self.depth}/{self.capacity}>"


async def receive_by(mailbox: Mailbox[M], clock: Clock, wall: float | None) -> M | None:
    """The next message, or None once ``clock.wall()`` reaches ``wall`` (an actor's timer
    folded into its receive: no separate timer task). ``wall=None`` waits forever."""
    if wall is None:
        return await mailbox.receive()
    with anyio.CancelScope() as scope:
        clock.cancel_at(scope, clock.mono_for_wall(wall))
        return await mailbox.receive()
    return None


async def ask(address: Address[M], make: Callable[[Reply[T]], M]) -> T:
    """Send ``make(reply)`` to ``address`` and wait for the answer."""
    reply: Reply[T] = Reply()
    await address.send(make(reply))
    return await reply.wait()


@asynccontextmanager
async def serving(mailbox: Mailbox[M]) -> AsyncIterator[tuple[TaskGroup, Address[M]]]:
    """A task group for an actor's helper tasks and the actor's own address: on leaving,
    the address is closed and the helpers are cancelled."""
    async with anyio.create_task_group() as tg:
        me = mailbox.address()
        try:
            yield tg, me
        finally:
            me.close()
            tg.cancel_scope.cancel()
