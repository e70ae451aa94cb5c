"""The launcher: the dispatcher's run supervisor, and the run actors it starts and stops.

It owns the ``RunSupervisor`` (one temporary child per run attempt, under the global
cap) and the run table (``runs.RunTable``), both fresh on each ``reset`` (the
dispatcher's (re)start). It

- starts the run actor of a committed claim (``start``), or reports the claim failed
  at once when no executor of that name is configured;
- cancels runs: an operator's cancel of one dispatch, the runs of a job replaced by a
  newer fire, the stale-run backstop of the health tick (``tick``, which also writes the
  heartbeats the run table collected);
- drains the runs on shutdown (``drain``, which reports ``Drained`` to the dispatcher);
- reports a run actor that died without reporting (``on_crash`` of the supervisor) as a
  ``crashed`` outcome;
- reports a run a worker claimed (``ctx.claimed`` of the ``external`` executor) as
  ``RunClaimed``, so that the run is its agent's.

Outcomes that do not come from a run actor (no executor, stale, died) go to ``finish``,
the dispatcher's batch; a death goes through the dispatcher's mailbox so that a loop
blocked in its receive wakes, or straight to ``finish`` when that mailbox is full (the
loop then runs anyway: a message is waiting); a claim likewise, or straight to ``claim``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial

from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from shepherd.actors.dispatcher.runs import Running, RunTable, run_order
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.host import Host
from shepherd.actors.messages import (
    DispatcherMsg,
    Drained,
    Entry,
    Event,
    RunClaimed,
    RunFinished,
    RunStarted,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.primitives.runsup import RunSupervisor
from shepherd.actors.run import run_actor
from shepherd.actors.writer import StoreMsg, write
from shepherd.store.errors import MailboxFull, StoreError
from shepherd.store.models import JobSpec
from shepherd.store.ops import Heartbeats

__all__ = ["Launcher"]

log = logging.getLogger("shepherd.dispatcher")


class Launcher:
    def __init__(
        self,
        executors: Mapping[str, Executor],
        writer: Address[StoreMsg],
        clock: Clock,
        *,
        emit: Callable[[Event], None],
        finish: Callable[[RunFinished], None],
        claim: Callable[[RunClaimed], None],
        counters: dict[str, int],
        host: Host,  # what runs may ask of the runtime (ctx.host)
        concurrency: int,
        data_dir: str,
        wants: Callable[[type], bool] = lambda kind: True,
    ) -> None:
        self._executors, self._writer, self._clock = executors, writer, clock
        self._wants = wants  # whether anyone hears ``RunStarted`` (built only then)
        self._emit, self._finish, self._counters = emit, finish, counters
        self._claim = claim
        self._concurrency = concurrency
        self._run_actor = partial(run_actor, clock=clock, data_dir=data_dir, host=host)
        self._report: Address[DispatcherMsg]  # set by ``run``, before any run starts
        self.reset()

    def reset(self) -> RunTable:
        """A fresh run table and run supervisor; returns the table (shared with the batch)."""
        self._runs = RunTable()
        self.runsup = RunSupervisor(
            "runs", max_children=self._concurrency, clock=self._clock, on_crash=self._died
        )
        return self._runs

    async def run(
        self,
        report: Address[DispatcherMsg],
        *,
        task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
    ) -> None:
        """Supervise the runs; they report their outcomes to ``report``."""
        self._report = report
        await self.runsup.run(task_status=task_status)

    @property
    def free(self) -> int:
        """How many more runs may start now (0 while draining)."""
        return self.runsup.free

    def start(self, e: Entry, job: JobSpec, run_id: int, now: float) -> None:
        """Start the run actor of a committed claim (the batch's ``start``)."""
        self._counters["admitted"] += 1
        attempt = e.attempt + 1
        mono = self._clock.now()
        self._runs.add(Running(run_id, e, attempt, job.pool, mono, mono))
        executor = self._executors.get(job.executor)
        if executor is None:
            error = f"no executor named {job.executor!r} in this runtime"
            self._finish(
                RunFinished(
                    run_id=run_id, dispatch_id=e.id, outcome="error", retry=False, error=error
                )
            )
            return
        actor = partial(
            self._run_actor,
            order=run_order(e, job, run_id, attempt),
            executor=executor,
            report=self._report,
            on_heartbeat=partial(self._heartbeat, e.id),
            on_claim=partial(self._claimed, e.id),
        )
        self.runsup.start_child(run_id, actor)
        if self._wants(RunStarted):
            self._emit(
                RunStarted(
                    dispatch_id=e.id,
                    run_id=run_id,
                    job=job.name,
                    attempt=attempt,
                    at=now,
                    agent=e.agent or "",
                    not_before=e.not_before,
                )
            )

    def cancel(self, dispatch_id: int, reason: str = "operator") -> bool:
        """An operator's cancel (or ``agent-offline``): True when ``dispatch_id`` has a
        run here (now cancelled)."""
        running = self._runs.get(dispatch_id)
        if running is None:
            return False
        self.runsup.cancel(running.run_id, reason)
        return True

    def replaced(self, job_ids: list[int]) -> None:
        """A newer fire replaces the runs of these jobs."""
        for job_id in job_ids:
            for run_id in self._runs.of_job(job_id):
                self.runsup.cancel(run_id, "replaced")

    async def tick(self, jobs: Mapping[int, JobSpec], margin: float) -> None:
        """The health monitor's tick: the stale-run backstop, then the heartbeats."""
        stale, finish = self._runs.stale(jobs, self._clock.now(), margin)
        self._counters["stale"] += len(stale)
        for run_id in stale:
            self.runsup.cancel(run_id, "stale")
        for msg in finish:
            self._finish(msg)
        beats = self._runs.take_beats()
        if beats:
            try:
                await write(self._writer, Heartbeats(beats))
            except StoreError as exc:
                log.error("heartbeats not written: %s", exc)

    def stop_admitting(self) -> None:
        self.runsup.stop_admitting()

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` s for the runs, cancel the rest, report ``Drained``."""
        await self._report.send(Drained(await self.runsup.drain(grace)))

    def _heartbeat(self, dispatch_id: int, run_id: int, wall: float) -> None:
        self._runs.heartbeat(dispatch_id, run_id, self._clock.now(), wall)

    def _claimed(self, dispatch_id: int, run_id: int, agent: str, at: float) -> None:
        msg = RunClaimed(run_id=run_id, dispatch_id=dispatch_id, agent=agent, at=at)
        try:
            self._report.tell(msg)
        except MailboxFull:
            self._claim(msg)  # a full mailbox: the loop runs again anyway

    def _died(self, run_id: int, exc: BaseException) -> None:
        r = self._runs.by_run(run_id)
        if r is None:
            return
        error = f"run actor died: {exc!r}"
        msg = RunFinished(run_id=run_id, dispatch_id=r.entry.id, outcome="crashed", error=error)
        try:
            self._report.tell(msg)
        except MailboxFull:
            self._finish(msg)  # a full mailbox: the loop runs again anyway
