"""Event fan-out to subscribers and to ``wait()`` callers (a plain object, not an actor:
it has no concurrency of its own; ``publish`` is synchronous and never blocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from shepherd.actors.messages import Event, OutcomeEvent

__all__ = ["EventHub"]


class EventHub:
    def __init__(self) -> None:
        self._subs: list[tuple[MemoryObjectSendStream[Event], tuple[type, ...] | None]] = []
        self._waiters: dict[int, list[anyio.Event]] = {}
        self.published = 0
        self.dropped = 0
        self.counts: dict[str, int] = {}

    def publish(self, event: Event) -> None:
        self.published += 1
        if isinstance(event, OutcomeEvent):
            self.counts[event.outcome] = self.counts.get(event.outcome, 0) + 1
            if event.final:
                for waiter in self._waiters.pop(event.dispatch_id, ()):
                    waiter.set()
        for stream, kinds in self._subs:
            if kinds is not None and not isinstance(event, kinds):
                continue
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                self.dropped += 1  # a slow subscriber loses events, never slows dispatch
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def waiter(self, dispatch_id: int) -> anyio.Event:
        event = anyio.Event()
        self._waiters.setdefault(dispatch_id, []).append(event)
        return event

    def forget(self, dispatch_id: int, event: anyio.Event) -> None:
        waiters = self._waiters.get(dispatch_id)
        if waiters and event in waiters:
            waiters.remove(event)
            if not waiters:
                del self._waiters[dispatch_id]

    @asynccontextmanager
    async def subscribe(
        self, *kinds: type, buffer: int = 10_000
    ) -> AsyncIterator[AsyncIterator[Event]]:
        send, recv = anyio.create_memory_object_stream[Event](buffer)
        entry = (send, kinds or None)
        self._subs.append(entry)
        try:
            async with recv:
                yield recv
        finally:
            self._subs.remove(entry)
            send.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "subscribers": len(self._subs),
            "waiters": sum(len(w) for w in self._waiters.values()),
            "published": self.published,
            "dropped": self.dropped,
            "outcomes": dict(self.counts),
        }
