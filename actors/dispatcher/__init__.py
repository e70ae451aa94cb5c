"""The dispatcher: its actor shell and the collaborators it holds.

=================  ==============================================================
module             owns
=================  ==============================================================
``actor``          the shell: receive loop, store reads, run actors, events
``ready``          the ready queue: ready and delayed heaps, parked waiters
``admission``      may a ready dispatch start now: verdicts, runs per job / pool
``breakers``       the circuit breaker of each executor (``actors.breaker``)
``agents``         the agent table: capability index, per-need heaps, runs per agent
``assign``         Dispatch's score (D14) as pure functions
``wake``           a sleeping agent's wake hook, run off the loop
``controls``       pauses (park keys), rate limits, drain waiters
``rates``          token buckets (exact GCRA) per executor / pool / agent / job
``runs``           the run table: runs in flight, heartbeats, stale detection
``commit``         one pass's group of writes, and what follows its commit
``finalize``       the retry policy (``decide``), the ops and events of an end
``recovery``       orphaned runs at start: their process groups, their guarantee
=================  ==============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shepherd.actors.dispatcher.actor import Dispatcher, DispatcherConfig

__all__ = ["Dispatcher", "DispatcherConfig"]


def __getattr__(name: str) -> Any:
    """``Dispatcher`` on first use (PEP 562): importing a collaborator such as
    ``rates`` (the config's rate limits) does not load the actor shell."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from shepherd.actors.dispatcher import actor

    return getattr(actor, name)
