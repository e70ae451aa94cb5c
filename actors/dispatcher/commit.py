"""The commit batch: what one dispatcher pass writes as one group, and what it does once
that group is committed.

A pass collects three kinds of work — outcomes reported by runs (``finished``),
dispatches admission ended without a run (``settles``) and dispatches admission let
through (``claims``) — and ``take`` turns them into at most three write ops
(``FinishRuns``, ``SettleQueued``, ``ClaimRuns``, built by ``finalize``), fencing
outcomes whose run is no longer current, then the agents' notes (``AgentNotes``: with
the runs workers claimed, ``claimed``). The shell sends the ops to the store writer;
then

- ``committed`` acts on the results: a finalized run leaves the run table, gives back
  its admission counts (its keys go to their next waiter), feeds its executor's
  breaker, and is queued again if it retries; the chain dispatches its end fired
  (``Finished.children``, committed with it) are queued; a claimed run is started through the
  ``start`` callback; every end is emitted as an event;
- ``failed`` keeps everything for the next pass (nothing of a failed group was
  committed): the outcomes stay pending, the rest goes back in the queue.

``Batch`` is a plain class holding references to the dispatcher's collaborators, with
no I/O of its own; ``flush`` writes a pass's group to the store writer, and ``cancel``
is an operator's cancel (of a run here, or of a queued dispatch in the store). The
module is longer than most because the three kinds of work and what each does once
committed are read together, in commit order.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from shepherd.actors.dispatcher.admission import Admission, free_keys
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.finalize import (
    claim_op,
    finish_op,
    finished,
    key_taken,
    outcome_event,
    queued_event,
    settled,
)
from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.actors.dispatcher.launcher import Launcher
from shepherd.actors.dispatcher.ready import ReadyQueue
from shepherd.actors.dispatcher.runs import Running, RunTable
from shepherd.actors.messages import (
    ApprovalsHeld,
    DispatchQueued,
    Entry,
    Event,
    RunClaimed,
    RunFinished,
    entry_from_new,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.router.delivery import should_announce
from shepherd.actors.writer import CommitNow, StoreMsg, write, write_many_now
from shepherd.store.errors import StoreError
from shepherd.store.models import JobSpec
from shepherd.store.ops import (
    AgentNotes,
    CancelDispatch,
    ClaimRuns,
    DeadLetterAlert,
    FinishRun,
    FinishRuns,
    FiredChild,
    Settle,
    SettleQueued,
    WriteOp,
)

__all__ = ["Batch", "Pending", "cancel", "flush"]

log = logging.getLogger("shepherd.dispatcher")

Start = Callable[[Entry, JobSpec, int, float], None]  # entry, job, run id, now


class Pending:
    """One group taken from the batch: its ops and what they were built from."""

    __slots__ = ("claims", "finals", "finished", "ops", "settles")

    def __init__(self) -> None:
        self.finished: list[RunFinished] = []
        self.finals: list[tuple[RunFinished, Running, FinishRun]] = []
        self.settles: list[tuple[Entry, Settle]] = []
        self.claims: list[Entry] = []
        self.ops: list[WriteOp] = []


class Batch:
    def __init__(
        self,
        *,
        instance: str,
        jobs: JobTable,
        queue: ReadyQueue,
        runs: RunTable,
        admission: Admission,
        breakers: BreakerTable,
        counters: dict[str, int],
        clock: Clock,
        emit: Callable[[Event], None],
        wake: Callable[[], None],
        start: Start,
        rng: random.Random | None = None,
        alert: DeadLetterAlert | None = None,
        wants: Callable[[type], bool] = lambda kind: False,
        epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        self._instance = instance
        self._epoch = epoch  # the node's epoch now (actors.cluster): fences the writes
        self._wants = wants
        self._alert = alert
        self._jobs = jobs
        self._queue = queue
        self._runs = runs
        self._admission = admission
        self._breakers = breakers
        self._counters = counters
        self._clock = clock
        self._emit = emit
        self._wake = wake
        self._start = start
        self._rng = rng or random.Random()
        self.finished: list[RunFinished] = []  # outcomes to finalize
        self.settles: list[tuple[Entry, Settle]] = []  # ended without running
        self.claims: list[Entry] = []  # admitted: to claim
        self.taken: list[tuple[int, int, str, float]] = []  # runs workers claimed: to record

    def __bool__(self) -> bool:
        return bool(self.finished or self.settles or self.claims)

    def add(self, e: Entry) -> None:
        """Queue ``e`` unless a run of it is in flight."""
        if e.id not in self._runs:
            self._queue.add(e, self._clock.wall())

    def hand_on(self, keys: list[str]) -> None:
        """Hand each key to its next waiter; wake the loop to admit one that was."""
        woke = False
        for key in keys:
            woke = self._queue.unpark(key) or woke
        if woke:
            self._wake()

    def claimed(self, msg: RunClaimed) -> None:
        """A worker claimed a run for its agent: the run is that agent's (its slot, its
        outcome's event and failure count) and goes on record with the next group."""
        self.taken.append((msg.run_id, msg.dispatch_id, msg.agent, msg.at))
        r = self._runs.get(msg.dispatch_id)
        if r is not None and r.run_id == msg.run_id:
            r.entry = msgspec.structs.replace(r.entry, agent=msg.agent)
            self.hand_on(self._admission.agents.take_over(msg.dispatch_id, msg.agent))

    def release(self, e: Entry, pool: str | None = None) -> None:
        """Give back what admission counted for ``e``; its keys go to their next waiter."""
        pool = pool if pool is not None else self._jobs.pool(e.job_id)
        self.hand_on(self._admission.release(e.job_id, pool) + self._admission.agents.release(e.id))

    def cancelled(
        self, dispatch_id: int, status: str | None, now: float, why: str = "cancelled by operator"
    ) -> None:
        """The store cancelled a queued dispatch (``status``: what it found): it leaves
        the queue, its free keys go to their next waiter."""
        e = self._queue.take(dispatch_id)
        if e is None:
            return
        self.hand_on(free_keys(e.job_id, self._jobs.get(e.job_id), self._admission, e.id))
        if status == "cancelled":
            name, error = self._jobs.name(e.job_id), why
            ev = outcome_event(e, name, None, e.attempt, "cancelled", "cancelled", now, error=error)
            self._emit(ev)

    def take(self, now: float) -> Pending:
        """Everything waiting, as ops (none if there is nothing to write)."""
        p = Pending()
        p.finished, self.finished = self.finished, []
        p.settles, self.settles = self.settles, []
        p.claims, self.claims = self.claims, []
        for msg in p.finished:
            r = self._runs.current(msg)
            if r is None:
                self._counters["fenced"] += 1
                continue
            job = self._jobs.get(r.entry.job_id)
            f = finish_op(msg, r.entry, job, now, attempt=r.attempt, rng=self._rng)
            p.finals.append((msg, r, f))
        if p.finals:
            finals = [f for _, _, f in p.finals]
            p.ops.append(
                FinishRuns(
                    finals, now, origin=self._instance, alert=self._alert, epoch=self._epoch()
                )
            )
        if p.settles:
            p.ops.append(SettleQueued([s for _, s in p.settles], now, alert=self._alert))
        if p.claims:
            jobs = self._jobs
            claims = [claim_op(e, jobs.get(e.job_id)) for e in p.claims]
            p.ops.append(ClaimRuns(claims, self._instance, now, epoch=self._epoch()))
        notes = self._admission.agents.take_notes(now)
        if self.taken:
            notes = notes or AgentNotes([], [], [], now)
            notes = msgspec.structs.replace(notes, claimed=self.taken)
            self.taken = []
        if notes is not None:  # after the claims and finals: their runs are written
            p.ops.append(notes)
        return p

    def failed(self, p: Pending) -> None:
        """Nothing of ``p`` was committed: keep the outcomes, put the rest back."""
        self._counters["store_errors"] += 1
        self.finished = p.finished + self.finished
        for e, _ in p.settles:
            self.add(e)
        for e in p.claims:
            self.release(e)
            self.add(e)

    def committed(self, p: Pending, results: list[Any], now: float) -> None:
        """Act on the results of ``p.ops``, in order (one result, or error, per op)."""
        results.reverse()
        if p.finals:
            self._after_finals(p.finals, results.pop(), now)
        if p.settles:
            self._after_settles(p.settles, results.pop(), now)
        if p.claims:
            self._after_claims(p.claims, results.pop(), now)

    def _after_finals(
        self, finals: list[tuple[RunFinished, Running, FinishRun]], results: Any, now: float
    ) -> None:
        if isinstance(results, StoreError):
            log.error("finishing runs failed: %s", results)
            results = [None] * len(finals)
        counters = self._counters
        for (msg, r, f), seq in zip(finals, results, strict=True):
            self._runs.remove(r)
            self.release(r.entry, r.pool)
            job = self._jobs.get(r.entry.job_id)
            if job is not None:
                self._breakers.on_outcome(job.executor, msg, self._clock.wall())
            self._admission.agents.on_outcome(r.entry.agent, msg.outcome)
            if seq is None:
                counters["fenced"] += 1
                log.warning(
                    "stale outcome refused: run %s of dispatch %s (%s) was settled elsewhere",
                    r.run_id,
                    r.entry.id,
                    msg.outcome,
                )
                continue
            counters[msg.outcome] += 1
            name = self._jobs.name(r.entry.job_id)
            announce = job is not None and should_announce(job, msg.outcome, msg.deliver)
            again, event = finished(msg, r.entry, r.attempt, f, seq, name, now, announce=announce)
            if again is not None:
                counters["retried"] += 1
                self.add(again)
            elif f.next == "dead":
                counters["dead"] += 1
            self._emit(event)
        self._add_children(getattr(results, "children", ()))

    def _add_children(self, children: Iterable[FiredChild]) -> None:
        """Queue the chain dispatches the finalized runs fired (committed with them)."""
        added: list[Entry] = []
        held: list[int] = []
        for child in children:
            self._counters["chained"] += 1
            if child.seq == 0:  # held by its job's approval gate: not ours until approved
                held.append(child.id)
                continue
            e = entry_from_new(child.row, child.id, child.seq)
            self.add(e)
            added.append(e)
        if added:
            self._wake()
            if self._wants(DispatchQueued):
                self._emit(queued_event(added, self._jobs.name, self._clock.wall()))
        if held:  # their timeouts and requests: the approvals actor, told at once
            self._emit(ApprovalsHeld(dispatch_ids=held, at=self._clock.wall()))

    def _after_settles(self, settles: list[tuple[Entry, Settle]], results: Any, now: float) -> None:
        if isinstance(results, StoreError):
            log.error("settling dispatches failed: %s", results)
            return
        for (e, s), ok in zip(settles, results, strict=True):
            if ok:
                self._counters["skipped"] += s.outcome == "skipped"
                for event in settled(e, s, self._jobs.name(e.job_id), now):
                    self._emit(event)

    def _after_claims(self, claims: list[Entry], results: Any, now: float) -> None:
        if isinstance(results, StoreError):
            log.error("claiming dispatches failed: %s", results)
            results = [None] * len(claims)
        lost = False
        for e, run_id in zip(claims, results, strict=True):
            job = self._jobs.get(e.job_id)
            if run_id == 0:  # its idempotency key is claimed by another run: recorded skipped
                self.release(e)
                self._counters["skipped"] += 1
                lost = True
                for event in key_taken(e, self._jobs.name(e.job_id), now):
                    self._emit(event)
            elif run_id is None or job is None:
                self.release(e)  # someone else cancelled or claimed it meanwhile
                self._counters["lost"] += 1
                lost = True
            else:
                self._start(e, job, run_id, now)
        if self.finished or lost:
            # outcomes decided here need a flush of their own; a slot a lost claim
            # left free takes the next queued dispatch now (another node claimed it:
            # no run of this node's ends to wake the dispatcher for the rest)
            self._wake()


async def flush(
    batch: Batch,
    writer: Address[StoreMsg],
    clock: Clock,
    now: float,
    commit_now: CommitNow | None = None,
) -> None:
    """Commit ``batch``'s group of writes, then act on what was committed. A group the
    store refused stays in the batch; the next try is a second later. ``commit_now``
    commits it in this task when the writer is idle (one commit, no hop to the writer
    and back); otherwise it goes through the writer's mailbox."""
    p = batch.take(now)
    if not p.ops:
        return
    try:
        results = await write_many_now(writer, p.ops, commit_now)
    except StoreError as exc:
        log.error("dispatcher could not commit (will retry): %s", exc)
        batch.failed(p)
        await clock.sleep_until(clock.now() + 1.0)
        return
    batch.committed(p, results, now)


async def cancel(
    batch: Batch, launcher: Launcher, writer: Address[StoreMsg], clock: Clock, dispatch_id: int
) -> str | None:
    """An operator's cancel: ``running`` when its run is here (now cancelled), else what
    the store's ``CancelDispatch`` found (None: no such dispatch)."""
    if launcher.cancel(dispatch_id):
        return "running"
    try:
        status: str | None = await write(writer, CancelDispatch(dispatch_id, clock.wall()))
    except StoreError as exc:
        log.error("cancel of dispatch %s failed: %s", dispatch_id, exc)
        raise
    batch.cancelled(dispatch_id, status, clock.wall())
    return status
