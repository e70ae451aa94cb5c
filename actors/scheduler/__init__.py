"""The scheduler: cron / every / one-shot timers become ``schedule`` dispatches.

``actor`` is the actor shell (inbox, timer, commits), ``timetable`` the in-memory
schedule it owns (a heap of fire times, each job's state, the slots planned ahead),
``plan`` the pure decisions (misfire policies, the error ladder, the store effects of
a slot) and ``cron`` the pure fire-time maths (cron, every, at; DST).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shepherd.actors.scheduler.actor import Scheduler, SchedulerConfig

__all__ = ["Scheduler", "SchedulerConfig"]


def __getattr__(name: str) -> Any:
    """The names on first use (PEP 562): validating a job's schedule (``cron``,
    ``plan``) does not load the actor shell, its inbox and the event loop."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("shepherd.actors.scheduler.actor"), name)
