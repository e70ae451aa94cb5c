"""Who hears which event besides the subscribers: ``ROUTES`` as data (each route with
its reason), and ``Fanout``, which publishes an event to the subscribers and then along
the routes, never blocking the publisher. Part of the tree's wiring (``runtime.tree``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from shepherd.actors.messages import ApprovalsHeld, Event, Outcome, OutcomeEvent, Poke
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.router import Routed
from shepherd.runtime.events import EventHub
from shepherd.store.errors import MailboxClosed, MailboxFull

__all__ = ["ROUTES", "Fanout", "Route"]

log = logging.getLogger("shepherd")


# -- who hears which event -----------------------------------------------------------


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """``listener`` hears the events of type ``hears`` for which ``when`` holds, as the
    message ``message(event)``, told (never blocking the publisher)."""

    listener: Literal["router", "scheduler", "approvals"]
    hears: type
    when: Callable[[Any], bool]
    message: Callable[[Any], Any]
    warn: bool  # log a warning for each event the full inbox could not take
    why: str


def _outcome(event: OutcomeEvent) -> Outcome:
    return Outcome(
        job_id=event.job_id,
        job=event.job,
        dispatch_id=event.dispatch_id,
        outcome=event.outcome,
        final=event.final,
        slot=event.slot,
        kind=event.kind,
        at=event.at,
    )


# Every event first goes to the subscribers (``EventHub``: ``subscribe()`` streams and
# ``wait()`` callers); then along these routes, in this order.
ROUTES: tuple[Route, ...] = (
    Route(
        listener="router",
        hears=OutcomeEvent,
        when=lambda e: (e.run_id is not None and e.announce) or e.status == "dead",
        message=Routed,
        warn=False,
        why="a run's outcome its job announces (``announce``: actors/router/delivery.py's"
        " rule, applied where the outcome is decided); a dead letter's alert row,"
        " committed with it, is loaded",
    ),
    Route(
        listener="approvals",
        hears=ApprovalsHeld,
        when=lambda e: True,
        message=lambda e: Poke(approvals=True),
        warn=True,
        why="chain children the dispatcher committed awaiting approval: their deadlines"
        " are read again and their requests sent, at once",
    ),
    Route(
        listener="scheduler",
        hears=OutcomeEvent,
        when=lambda e: e.kind in ("schedule", "spawn") and e.final,
        message=_outcome,
        warn=True,
        why="a schedule dispatch ended: the error ladder, the end of a one-shot job (a"
        " spawn dispatch ends its spawned one-shot)",
    ),
)


class Fanout:
    """Publishes an event to the subscribers, then along ``ROUTES``; never blocks,
    counts per listener what a full inbox could not take."""

    def __init__(self, hub: EventHub, listeners: Mapping[str, Address[Any]]) -> None:
        self._hub = hub
        self._listeners = dict(listeners)
        self.dropped: dict[str, int] = {name: 0 for name in self._listeners}

    def publish(self, event: Event) -> None:
        self._hub.publish(event)
        for route in ROUTES:
            if not isinstance(event, route.hears) or not route.when(event):
                continue
            try:
                self._listeners[route.listener].tell(route.message(event))
            except (MailboxFull, MailboxClosed):
                self.dropped[route.listener] += 1
                if route.warn:
                    log.warning(
                        "%s missed the outcome of dispatch %s",
                        route.listener,
                        getattr(event, "dispatch_id", None),
                    )

    def statistics(self) -> dict[str, Any]:
        return {"routes_dropped": dict(self.dropped)}
