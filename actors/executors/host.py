"""What an executor may ask of the runtime that runs it: the ``Host``.

An executor reaches outside its own run only through ``ctx.host``, and only for what is
listed here; it never holds the ``Runtime``. Every argument and result is a plain value
or a msgspec Struct of ``store``; lookups of something that is not there raise
``NotFound``.

=================  ===========================================  ======================
method             what it does                                 asked by
=================  ===========================================  ======================
``inbox``          ``agent``'s pending messages (and            agent (prompt inbox)
                   broadcasts), OCS inbox order, unexpired
``mark_delivered`` pending messages → delivered, committed      agent (turn accepted)
``run``            one run (a chained run's parent)             agent (trigger context)
``job``            one job by name                              watchdog (start time)
``retire_job``     disable, then remove a job; gone is fine     watchdog (self-destruct)
``deliver``        queue a delivery through the router;         watchdog (alerts)
                   returns its id once committed
``record_process`` store a run's process group, on record on    shell, watchdog
                   return (``procs.spawn_group`` waits for it)  (``procs.spawn_group``)
=================  ===========================================  ======================

The runtime implements it in ``runtime/host.py``; tests hand executors a fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shepherd.actors.executors.procs import ProcessId
from shepherd.store.models import JobRow, Message, Run

__all__ = ["Host"]


class Host(Protocol):
    async def inbox(self, agent: str, *, limit: int) -> list[Message]:
        """Up to ``limit`` pending, unexpired messages to ``agent`` or ``broadcast``."""
        ...

    async def mark_delivered(self, ids: Sequence[int]) -> int:
        """Pending messages ``ids`` → delivered; how many changed."""
        ...

    async def run(self, run_id: int) -> Run:
        """Run ``run_id``; ``NotFound`` if there is none."""
        ...

    async def job(self, name: str) -> JobRow:
        """The job named ``name``; ``NotFound`` if there is none."""
        ...

    async def retire_job(self, name: str) -> None:
        """Disable, then remove the job ``name``; a job already gone is fine."""
        ...

    async def deliver(
        self,
        body: str,
        *,
        to: str | None,
        channel: str | None,
        kind: str,
        job: str | None,
        run_id: int | None,
        dispatch_id: int | None,
        outcome: str | None,
    ) -> int:
        """Queue a delivery of ``body`` (retried until sent); its id once committed."""
        ...

    async def record_process(self, run_id: int, proc: ProcessId) -> None:
        """Store ``proc`` on run ``run_id``; returns once crash recovery would find it
        (committed, or in the runtime's process journal: ``journal.py``)."""
        ...
