"""The router's inbox, ``RouterMsg``: frozen msgspec Structs carrying ids and values
(an ``Announce`` carries its reply slot)."""

from __future__ import annotations

import msgspec

from shepherd.actors.messages import OutcomeEvent
from shepherd.actors.primitives.mailbox import Reply

__all__ = ["Announce", "Attempted", "ForgetJobs", "Reload", "Routed", "RouterMsg", "Stop"]


class Routed(msgspec.Struct, frozen=True, tag=True):
    """A run outcome, forwarded by the runtime (never blocks the dispatcher)."""

    event: OutcomeEvent


class Announce(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Deliver ``body`` to ``to`` / ``channel``; the reply gets the delivery id once
    the row is committed. ``kind`` is the caller's label (``alert`` from the watchdog,
    ``api`` from ``Runtime.deliver`` by default); ``announce`` is the router's own."""

    body: str
    to: str | None
    channel: str | None
    kind: str
    reply: Reply[int]
    job: str | None = None
    run_id: int | None = None
    dispatch_id: int | None = None
    outcome: str | None = None


class Attempted(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """From one of the router's send tasks: a send of ``delivery_id`` ended."""

    delivery_id: int
    ok: bool
    sink: str | None = None
    error: str | None = None
    final: bool = False  # failed for good now, whatever attempts are left


class ForgetJobs(msgspec.Struct, frozen=True, tag=True):
    """These jobs changed: drop their cached specs."""

    job_ids: list[int]


class Reload(msgspec.Struct, frozen=True, tag=True):
    """Pending deliveries changed in the store (operator retry): load them."""


class Stop(msgspec.Struct, frozen=True, tag=True):
    """Handle what is queued, then exit (pending sends resume on the next start)."""


RouterMsg = Routed | Announce | Attempted | ForgetJobs | Reload | Stop
