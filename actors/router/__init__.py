"""The router: inbox expiry and announce delivery to sinks, with durable retries.

``actor`` is the actor shell (inbox, timers, commits, send tasks), ``messages`` its
inbox type, ``outbox`` the deliveries still to be sent and the retry decision,
``sinks`` the senders (callbacks, webhooks, the gateway) and ``delivery`` the pure
decisions (config, job settings, text, aliases, which sink, retry delay).
"""

from shepherd.actors.router.actor import Router
from shepherd.actors.router.messages import Announce, ForgetJobs, Reload, Routed, RouterMsg, Stop
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
