"""Event fan-out to subscribers and to ``wait()`` callers (a plain object, not an actor:
it has no concurrency of its own; ``publish`` is synchronous and never blocks).

Besides the ``subscribe()`` streams, a *listener* (``listen(fn)``) is a plain function
called with each event as it is published: the HTTP event stream and the metrics use
one, so they stamp sequence numbers and count without a task of their own. A listener
must be cheap and must not raise. ``wants(kind)`` tells a publisher whether anyone
hears events of that type, so an event that costs something to build (``DispatchQueued``)
is built only then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from shepherd.actors.messages import DispatchQueued, Event, OutcomeEvent, Queued
from shepherd.store.ops import NewDispatch
from shepherd.store.protocol import Store

__all__ = ["EventHub", "held_news"]


class EventHub:
    def __init__(self) -> None:
        self._subs: list[tuple[MemoryObjectSendStream[Event], tuple[type, ...] | None]] = []
        self._waiters: dict[int, list[anyio.Event]] = {}
        self._listeners: list[tuple[Callable[[Event], None], tuple[type, ...] | None]] = []
        self._wanted: dict[type, bool] = {}  # ``wants`` by kind, until who hears changes
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
        for fn, kinds in self._listeners:
            if kinds is None or isinstance(event, kinds):
                fn(event)
        for stream, kinds in self._subs:
            if kinds is not None and not isinstance(event, kinds):
                continue
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                self.dropped += 1  # a slow subscriber loses events, never slows dispatch
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def wants(self, kind: type) -> bool:
        """Whether a listener or a subscriber hears events of type ``kind`` (asked for
        each run: kept until a listener or subscriber comes or goes)."""
        wanted = self._wanted.get(kind)
        if wanted is None:
            hearers = (kinds for _, kinds in (*self._listeners, *self._subs))
            wanted = self._wanted[kind] = any(k is None or kind in k for k in hearers)
        return wanted

    def listen(self, fn: Callable[[Event], None], *kinds: type) -> Callable[[], None]:
        """Call ``fn(event)`` for each event published (of ``kinds``, or all); returns
        the function that stops it."""
        entry = (fn, kinds or None)
        self._listeners.append(entry)
        self._wanted.clear()

        def stop() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._wanted.clear()

        return stop

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
        self._wanted.clear()
        try:
            async with recv:
                yield recv
        finally:
            self._subs.remove(entry)
            self._wanted.clear()
            send.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "subscribers": len(self._subs),
            "listeners": len(self._listeners),
            "waiters": sum(len(w) for w in self._waiters.values()),
            "published": self.published,
            "dropped": self.dropped,
            "outcomes": dict(self.counts),
        }


async def held_news(
    store: Store,
    emit: Callable[[Event], None],
    wants: Callable[[type], bool],
    held: list[tuple[NewDispatch, int]],
    now: float,
) -> None:
    """A ``DispatchQueued`` (state ``awaiting_approval``) for the dispatches an insert
    held at their job's approval gate, while someone listens. One read each: a full
    approval backlog cancels a row instead, and the insert's answer is the same."""
    if not wants(DispatchQueued):
        return
    news = []
    for new, dispatch_id in held:
        d = await store.dispatch(dispatch_id)
        if d is not None and d.status == "awaiting_approval":
            news.append(
                Queued(
                    dispatch_id=dispatch_id,
                    job=new.job_name,
                    priority=d.priority,
                    state="awaiting_approval",
                    source=new.kind,
                    not_before=new.not_before,
                    slot=new.slot,
                )
            )
    if news:
        emit(DispatchQueued(dispatches=news, at=now))
