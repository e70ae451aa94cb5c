"""``GET /api/v1/events``: the event stream as Server-Sent Events, and the in-app hub
every HTTP module publishes through (``ctx.state["events"]``).

``EventStream`` turns the runtime's events (``RunStarted``, ``OutcomeEvent``,
``SlotRecord``, ``DispatchQueued``) into ``(seq, kind, data)`` items: ``kind`` is one
of ``KINDS``, ``data`` a JSON-ready dict that always holds ``kind`` and ``at``, and
``seq`` numbers every item of this process in order (a gap in a client's ids is what
it missed). Other modules add their own with ``publish(kind, data)`` (``lease``).

It hears the runtime through an ``EventHub`` listener, registered only while a
subscriber is connected: with nobody listening, dispatch pays nothing for it. Each
subscriber has a bounded buffer; a full one loses the item (counted per subscriber
and in total), so a slow client never slows dispatch. ``close()`` ends the current
streams (the http actor's stop: an open stream must not hold the shutdown up).

Each event on the wire is ``id: <seq>``, ``event: <kind>``, ``data: <json>``; a
``: keepalive`` comment goes out after ``KEEPALIVE`` seconds of silence, and
``: dropped <n>`` when the client's buffer lost items since the last event.

The module is longer than most because every field of the contract is spelled out
once, in ``event_items``, where a reader checks it against the README's table.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Literal, assert_never

import anyio
import msgspec
from anyio.lowlevel import checkpoint
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from shepherd.actors.messages import (
    ApprovalsHeld,
    DispatchQueued,
    Event,
    OutcomeEvent,
    RunStarted,
    SlotRecord,
)
from shepherd.actors.nats import NatsPublisher
from shepherd.actors.primitives.clock import Clock
from shepherd.runtime.http.api import ApiError, decode_query, error_response
from shepherd.runtime.http.auth import AuthError, Principal
from shepherd.runtime.http.config import NatsConfig
from shepherd.runtime.http.context import HttpContext

__all__ = [
    "KEEPALIVE",
    "KINDS",
    "EventStream",
    "Subscription",
    "closing_streams",
    "event_items",
    "hub_of",
    "nats_publisher",
    "routes",
]

KINDS: tuple[str, ...] = ("dispatch", "run_started", "outcome", "slot", "lease")
Kind = Literal["dispatch", "run_started", "outcome", "slot", "lease"]
Item = tuple[int, str, dict[str, Any]]
KEEPALIVE = 15.0  # seconds of silence before a ``: keepalive`` comment
BUFFER = 4_096  # items a subscriber may fall behind before it loses some


def event_items(ev: Event) -> Iterable[tuple[str, dict[str, Any]]]:
    """The stream's ``(kind, data)`` for one runtime event (none for internal ones)."""
    match ev:
        case DispatchQueued():
            for d in ev.dispatches:
                yield (
                    "dispatch",
                    {
                        "kind": "dispatch",
                        "at": ev.at,
                        "dispatch_id": d.dispatch_id,
                        "job": d.job,
                        "priority": d.priority,
                        "state": d.state,
                        "source": d.source,
                    },
                )
        case RunStarted():
            yield (
                "run_started",
                {
                    "kind": "run_started",
                    "at": ev.at,
                    "dispatch_id": ev.dispatch_id,
                    "run_id": ev.run_id,
                    "job": ev.job,
                    "attempt": ev.attempt,
                    "agent": ev.agent,
                },
            )
        case OutcomeEvent():
            yield (
                "outcome",
                {
                    "kind": "outcome",
                    "at": ev.at,
                    "dispatch_id": ev.dispatch_id,
                    "run_id": ev.run_id,
                    "job": ev.job,
                    "attempt": ev.attempt,
                    "outcome": ev.outcome,
                    "status": ev.status,
                    "final": ev.final,
                    "agent": ev.agent,
                    "error": ev.error,
                },
            )
        case SlotRecord():
            yield (
                "slot",
                {
                    "kind": "slot",
                    "at": ev.at,
                    "job": ev.job,
                    "reason": ev.reason,
                    "dispatch_id": ev.dispatch_id,
                    "slot": ev.slot,
                },
            )
        case ApprovalsHeld():  # internal wiring (the approvals actor's), not news
            return
        case _:
            assert_never(ev)


class Subscription:
    """One subscriber: its filters, its bounded buffer (a deque: ``offer`` is an append
    and, when the reader waits, one wake-up), what it lost."""

    __slots__ = ("_ended", "_items", "_wake", "agent", "dropped", "job", "kinds", "limit")

    def __init__(
        self, kinds: frozenset[str] | None, job: str | None, agent: str | None, buffer: int
    ) -> None:
        self.kinds, self.job, self.agent = kinds, job, agent
        self.limit = buffer
        self._items: deque[Item] = deque()
        self._wake: anyio.Event | None = None  # set while the reader waits
        self._ended = False
        self.dropped = 0

    def offer(self, item: Item) -> bool:
        """Queue ``item`` if it passes the filters; False when the buffer lost it."""
        _, kind, data = item
        if self.kinds is not None and kind not in self.kinds:
            return True
        if self.job is not None and data.get("job") != self.job:
            return True
        if self.agent is not None and data.get("agent") != self.agent:
            return True
        if self._ended:
            return True
        if len(self._items) >= self.limit:
            self.dropped += 1
            return False
        self._items.append(item)
        if self._wake is not None:
            self._wake.set()
            self._wake = None
        return True

    async def next(self, timeout: float) -> Item | None:
        """The next item, or None after ``timeout`` seconds of silence; ``EndOfStream``
        once the hub ended this subscription and its buffer is empty."""
        if not self._items and not self._ended:
            self._wake = wake = anyio.Event()
            with anyio.move_on_after(timeout):
                await wake.wait()
            self._wake = None
        else:
            await checkpoint()  # a reader that never waits still lets others run
        return self.receive_nowait() if self._items or self._ended else None

    def receive_nowait(self) -> Item:
        if self._items:
            return self._items.popleft()
        if self._ended:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    def end(self) -> None:
        """No more items (those buffered are still read)."""
        self._ended = True
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def close(self) -> None:
        self.end()
        self._items.clear()


class EventStream:
    """The in-app hub (``ctx.state["events"]``): ``publish(kind, data)``,
    ``subscribe(...)``, ``close()``, ``statistics()``."""

    def __init__(self, hub: Any = None, *, buffer: int = BUFFER) -> None:
        self._hub = hub  # runtime.events.EventHub, or None (a bare hub, for tests)
        self._subs: list[Subscription] = []
        self._unlisten: Callable[[], None] | None = None
        self.buffer = buffer
        self.keepalive = KEEPALIVE
        self.seq = 0
        self.published = 0
        self.dropped = 0

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """One item for every subscriber whose filters it passes; never blocks."""
        self.seq += 1
        self.published += 1
        data.setdefault("kind", kind)
        data.setdefault("at", time.time())
        item = (self.seq, kind, data)
        for sub in self._subs:
            if not sub.offer(item):
                self.dropped += 1

    def _on_event(self, ev: Event) -> None:
        for kind, data in event_items(ev):
            self.publish(kind, data)

    @asynccontextmanager
    async def subscribe(
        self,
        kinds: Iterable[str] | None = None,
        *,
        job: str | None = None,
        agent: str | None = None,
        buffer: int | None = None,
    ) -> AsyncIterator[Subscription]:
        wanted = frozenset(kinds) if kinds else None
        sub = Subscription(wanted, job, agent, buffer or self.buffer)
        self._subs.append(sub)
        if self._hub is not None and self._unlisten is None:
            self._unlisten = self._hub.listen(
                self._on_event, RunStarted, OutcomeEvent, SlotRecord, DispatchQueued
            )
        try:
            yield sub
        finally:
            self._subs.remove(sub)
            sub.close()
            if not self._subs and self._unlisten is not None:
                self._unlisten()
                self._unlisten = None

    def close(self) -> None:
        """End the streams open now (new ones may start afterwards)."""
        for sub in self._subs:
            sub.end()

    def statistics(self) -> dict[str, Any]:
        return {
            "subscribers": len(self._subs),
            "published": self.published,
            "dropped": self.dropped,
            "seq": self.seq,
        }

    def __repr__(self) -> str:
        return f"<EventStream subscribers={len(self._subs)} seq={self.seq}>"


class EventsQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: list[Kind] = []
    job: str | None = None
    agent: str | None = None


def caller(ctx: HttpContext, request: Request) -> Principal | Response:
    """The session's principal (the dashboard's cookie, when that hook is set), else
    the bearer token's; an error answer when neither is good."""
    hook = ctx.state.get("session_principal")
    if hook is not None:
        found = hook(request)
        if found is not None:
            return found  # type: ignore[no-any-return]
    try:
        return ctx.auth.authenticate(request.headers)
    except AuthError as exc:
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
        if exc.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return error_response(exc.status, exc.message, headers=headers)


def _frame(item: Item) -> bytes:
    seq, kind, data = item
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, kind.encode(), msgspec.json.encode(data))


def routes(ctx: HttpContext) -> list[BaseRoute]:
    hub = EventStream(ctx.rt.events if hasattr(ctx.rt, "events") else None)
    ctx.state["events"] = hub

    async def events(request: Request) -> Response:
        who = caller(ctx, request)
        if isinstance(who, Response):
            return who
        if not who.allows("read"):
            return error_response(403, f"this needs a token of scope 'read' (yours: {who.scope!r})")
        try:
            q: EventsQuery = decode_query(request, EventsQuery)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.field)

        async def body() -> AsyncIterator[bytes]:
            async with hub.subscribe(q.kind or None, job=q.job, agent=q.agent) as sub:
                yield b": connected\n\n"
                reported = 0
                while True:
                    try:
                        item = await sub.next(hub.keepalive)
                    except anyio.EndOfStream:
                        return
                    if item is None:
                        yield b": keepalive\n\n"
                        continue
                    chunk = [_frame(item)]
                    for _ in range(255):  # what else is waiting goes in the same write
                        try:
                            chunk.append(_frame(sub.receive_nowait()))
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    if sub.dropped != reported:
                        chunk.insert(0, b": dropped %d\n\n" % (sub.dropped - reported))
                        reported = sub.dropped
                    yield b"".join(chunk)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    return [Route("/api/v1/events", events, methods=["GET"], name="events")]


def hub_of(app: Any) -> EventStream | None:
    """The ``EventStream`` of an app built by ``build_app`` (None without one)."""
    ctx = getattr(getattr(app, "state", None), "http", None)
    found = ctx.state.get("events") if ctx is not None else None
    return found if isinstance(found, EventStream) else None


def closing_streams(app: Any, stop: Callable[[], None]) -> Callable[[], None]:
    """The http actor's stop hook: the open event streams end first (they would hold
    uvicorn's graceful exit for its whole grace), then ``stop``."""

    def both() -> None:
        hub = hub_of(app)
        if hub is not None:
            hub.close()
        stop()

    return both


def nats_publisher(app: Any, cfg: NatsConfig, clock: Clock) -> NatsPublisher:
    """The tree's ``nats`` child, fed by ``app``'s hub (``[http.nats]``)."""
    hub = hub_of(app)
    assert hub is not None, "the events route module builds the hub"
    return NatsPublisher(cfg.url, cfg.prefix, source=hub.subscribe, clock=clock)
