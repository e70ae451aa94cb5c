"""The router: inbox expiry and announce delivery to sinks, with durable retries.

``actor`` is the actor shell (inbox, timers, commits, send tasks), ``messages`` its
inbox type, ``outbox`` the deliveries still to be sent and the retry decision,
``sinks`` the senders (callbacks, webhooks, the gateway) and ``delivery`` the pure
decisions (config, job settings, text, aliases, which sink, retry delay).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shepherd.actors.router.actor import Router
    from shepherd.actors.router.messages import (
        Announce,
        ForgetJobs,
        Reload,
        Routed,
        RouterMsg,
        Stop,
    )
    from shepherd.actors.router.sinks import SinkFn

__all__ = [
    "Announce",
    "ForgetJobs",
    "Reload",
    "Routed",
    "Router",
    "RouterMsg",
    "SinkFn",
    "Stop",
]


def __getattr__(name: str) -> Any:
    """The names on first use (PEP 562): the pure ``delivery`` module (the config's
    delivery settings) does not load the actor shell, its inbox type and its senders."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"shepherd.actors.router.{where}"), name)


_WHERE = {
    **dict.fromkeys(
        ("Announce", "ForgetJobs", "Reload", "Routed", "RouterMsg", "Stop"), "messages"
    ),
    "Router": "actor",
    "SinkFn": "sinks",
}
