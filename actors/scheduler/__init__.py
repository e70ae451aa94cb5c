"""The scheduler: cron / every / one-shot timers become ``schedule`` dispatches.

``actor`` is the actor shell (inbox, timer, commits), ``timetable`` the in-memory
schedule it owns (a heap of fire times, each job's state, the slots planned ahead),
``plan`` the pure decisions (misfire policies, the error ladder, the store effects of
a slot) and ``cron`` the pure fire-time maths (cron, every, at; DST).
"""

from shepherd.actors.scheduler.actor import Scheduler, SchedulerConfig

__all__ = ["Scheduler", "SchedulerConfig"]
