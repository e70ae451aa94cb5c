"""The dispatcher actor: the shell that holds the dispatch collaborators and performs
what they decide.

Role: keep every queued dispatch in memory (``ready.ReadyQueue``), admit what may start
under the global cap and the admission rules (``admission.admit``, gated by the
executors' circuit breakers, ``breakers.BreakerTable``), claim runs and start one run
actor per attempt under its run supervisor (``runs.RunTable`` tracks them), and turn
each outcome into done / retry / dead letter (``finalize``). Each loop pass handles
every message already waiting and commits what it decided as one group of writes
(``commit.Batch``), so a burst of N dispatches costs a few commits, not N.
Inbox: ``DispatcherMsg`` (``actors.messages``). Sends: write ops to the store writer
(ask), ``Event``s to the sink, ``RunFinished`` / ``Poke`` to itself. Restart type:
permanent; on (re)start it recovers orphaned runs (``recovery``: their process groups
are killed first) and reloads jobs and the queue from the store. Timers: one, the
earliest not-before on the delayed heap, folded into the receive (``receive_by``).

This module is longer than the other shells because it performs every effect its
collaborators decide (store reads and writes, run actors, events) and wires them
together; each decision stays in the module that owns its state.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, assert_never

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from shepherd.actors.clock import Clock
from shepherd.actors.dispatcher.admission import Admission, admit
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.commit import Batch
from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.actors.dispatcher.ready import ReadyQueue
from shepherd.actors.dispatcher.recovery import recover_orphans
from shepherd.actors.dispatcher.runs import Running, RunTable, run_order
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.host import Host
from shepherd.actors.mailbox import Address, Mailbox, Reply, receive_by
from shepherd.actors.messages import (
    Cancel,
    DispatcherMsg,
    Drain,
    Drained,
    Enqueued,
    Entry,
    Event,
    JobsChanged,
    Poke,
    Probe,
    RunFinished,
    RunStarted,
    Tick,
    entry_from_dispatch,
)
from shepherd.actors.run import run_actor
from shepherd.actors.runsup import RunSupervisor
from shepherd.actors.writer import StoreMsg, write, write_many
from shepherd.store.errors import StoreError
from shepherd.store.models import JobSpec
from shepherd.store.ops import CancelDispatch, Heartbeats
from shepherd.store.protocol import Store

__all__ = ["Dispatcher", "DispatcherConfig"]

log = logging.getLogger("shepherd.dispatcher")

COUNTERS = [
    "admitted",
    "ok",
    "error",
    "timeout",
    "crashed",
    "cancelled",
    "retried",
    "dead",
    "skipped",
    "fenced",
    "store_errors",
    "loops",
    "deferred",
    "stale",
    "reloads",
]


class DispatcherConfig(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    concurrency: int = 64
    pool_limits: dict[str, int] = msgspec.field(default_factory=dict)
    data_dir: str = "."
    max_batch: int = 2000
    breaker_fail_max: int = 5
    breaker_reset: float = 30.0
    stale_margin: float = 5.0  # past a deadline by this much, the stale check steps in


class Dispatcher:
    def __init__(
        self,
        cfg: DispatcherConfig,
        *,
        store: Store,
        writer: Address[StoreMsg],
        mailbox: Mailbox[DispatcherMsg],
        executors: Mapping[str, Executor],
        clock: Clock,
        emit: Callable[[Event], None],
        host: Host,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._writer = writer
        self._mailbox = mailbox
        self._executors = executors
        self._clock = clock
        self._emit = emit
        self._host = host  # what runs may ask of the runtime (ctx.host)
        self._rng = random.Random()
        self._reset()

    def _reset(self) -> None:
        cfg = self._cfg
        self._jobs = JobTable()  # refreshed in place: the batch reads the same table
        self._queue = ReadyQueue()
        self._runs = RunTable()
        self._admission = Admission(cfg.pool_limits)
        self._breakers = BreakerTable(fail_max=cfg.breaker_fail_max, reset=cfg.breaker_reset)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._batch = Batch(
            instance=cfg.instance,
            jobs=self._jobs,
            queue=self._queue,
            runs=self._runs,
            admission=self._admission,
            breakers=self._breakers,
            counters=self.counters,
            clock=self._clock,
            emit=self._emit,
            wake=self._wake,
            start=self._start,
            rng=self._rng,
        )
        self._ext_seq = 0  # the newest seq read from the store
        self._poked = Poke()  # the union of this batch's Pokes
        self._draining = self._drained = False
        self._drain_reply: Reply[int] | None = None
        self._drained_count = 0
        self.recovery_seconds = 0.0
        self.recovered = 0

    # -- lifecycle -----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._reset()
        began = self._clock.now()
        recovered = await recover_orphans(
            self._store, self._writer, self._clock, origin=self._cfg.instance
        )
        for run_id, dispatch_id, action in recovered:
            log.warning("run %s of dispatch %s was orphaned: %s", run_id, dispatch_id, action)
        await self._load_jobs()
        await self._load_queued(0)
        self.recovered = len(recovered)
        self.recovery_seconds = self._clock.now() - began
        log.info(
            "dispatcher ready: %d orphaned runs resolved, %d queued, in %.3fs",
            len(recovered),
            len(self._queue),
            self.recovery_seconds,
        )
        async with anyio.create_task_group() as tg:
            self._runsup = RunSupervisor(
                "runs",
                max_children=self._cfg.concurrency,
                clock=self._clock,
                on_crash=self._run_actor_died,
            )
            await tg.start(self._runsup.run)
            self._self = self._mailbox.address()
            self._wake()  # a first pass admits what was loaded from the store
            task_status.started()
            try:
                await self._loop(tg)
            finally:
                self._self.close()
                tg.cancel_scope.cancel()

    async def _loop(self, tg: TaskGroup) -> None:
        while True:
            try:
                first = await receive_by(self._mailbox, self._clock, self._queue.next_wake())
            except anyio.EndOfStream:
                return
            batch = self._mailbox.drain(first, self._cfg.max_batch) if first is not None else []
            self.counters["loops"] += 1
            for msg in batch:
                await self._handle(msg, tg)
            if self._poked:
                await self._reload()
            now = self._clock.wall()
            self._queue.promote(now)
            if not self._draining:
                self._admit(now)
            await self._flush(now)
            if self._drained and not self._runs and not self._batch.finished:
                if self._drain_reply is not None:
                    self._drain_reply.set(self._drained_count)
                return

    async def _handle(self, msg: DispatcherMsg, tg: TaskGroup) -> None:
        match msg:
            case Enqueued(entries):
                for e in entries:
                    self._batch.add(e)
            case RunFinished():
                self._batch.finished.append(msg)
            case Cancel(dispatch_id, reply):
                reply.set(await self._cancel(dispatch_id))
            case Poke():
                self._poked |= msg  # a Poke with no flag only wakes the loop
            case JobsChanged(ids):
                await self._load_jobs(ids)
            case Drain(grace, reply):
                self._draining = True
                self._drain_reply = reply
                self._runsup.stop_admitting()
                tg.start_soon(self._drain_runs, grace)
            case Drained(cancelled):
                self._drained = True
                self._drained_count = cancelled
            case Tick():
                await self._tick()
            case Probe(executor, healthy):
                self._breakers.on_probe(executor, healthy, self._clock.wall())
            case _:
                assert_never(msg)

    def _wake(self) -> None:
        self._self.tell(Poke())  # only wakes the loop for another pass

    async def _drain_runs(self, grace: float) -> None:
        cancelled = await self._runsup.drain(grace)
        await self._self.send(Drained(cancelled))

    async def _tick(self) -> None:
        """The health monitor's tick: the stale-run backstop, then the heartbeats."""
        stale, finish = self._runs.stale(self._jobs, self._clock.now(), self._cfg.stale_margin)
        self.counters["stale"] += len(stale)
        for run_id in stale:
            self._runsup.cancel(run_id, "stale")
        self._batch.finished += finish
        beats = self._runs.take_beats()
        if beats:
            try:
                await write(self._writer, Heartbeats(beats))
            except StoreError as exc:
                log.error("heartbeats not written: %s", exc)

    # -- loading -------------------------------------------------------------------

    async def _load_jobs(self, ids: list[int] | None = None) -> None:
        if ids is None:
            before = self._jobs.replace(await self._store.jobs())
        else:  # only those: O(changed)
            before = self._jobs.refresh(ids, await self._store.jobs_by_id(ids))
        # the waiters of a changed job go back through admission (a disabled job's fires)
        self._queue.take_changed(before, self._jobs)

    async def _reload(self) -> None:
        """Once per batch, however many ``Poke``s it held: what other processes committed."""
        what, self._poked = self._poked, Poke()
        self.counters["reloads"] += 1
        if what.jobs:
            await self._load_jobs()
        if what.dispatches or what.jobs:
            await self._load_queued(self._ext_seq, exclude_own=True)
        if what.cancels:
            for dispatch_id, status in await self._store.cancel_requests():
                if status == "running":
                    await self._cancel(dispatch_id, write_through=False)

    async def _load_queued(self, after_seq: int, *, exclude_own: bool = False) -> None:
        exclude = self._cfg.instance if exclude_own else None
        for d in await self._store.queued_since(after_seq, exclude_origin=exclude):
            self._ext_seq = max(self._ext_seq, d.seq)
            if d.job_id not in self._jobs:
                await self._load_jobs()
            self._batch.add(entry_from_dispatch(d))

    # -- admission and cancel ------------------------------------------------------------

    def _admit(self, now: float) -> None:
        free = self._runsup.free - len(self._batch.claims)
        if free <= 0 or not self._queue.has_ready:
            return
        a = admit(self._queue, self._jobs, self._admission, self._breakers, free, now)
        self._batch.claims += a.claims
        self._batch.settles += a.settles
        self.counters["deferred"] += a.deferred
        for job_id in a.replaced:
            for run_id in self._runs.of_job(job_id):
                self._runsup.cancel(run_id, "replaced")
        if a.unparked:
            self._wake()  # unparked after this pass's admission: admit now

    async def _cancel(self, dispatch_id: int, *, write_through: bool = True) -> str | None:
        running = self._runs.get(dispatch_id)
        if running is not None:
            self._runsup.cancel(running.run_id, "operator")
            return "running"
        if not write_through:
            return None
        try:
            op = CancelDispatch(dispatch_id, self._clock.wall())
            status: str | None = await write(self._writer, op)
        except StoreError as exc:
            log.error("cancel of dispatch %s failed: %s", dispatch_id, exc)
            raise
        self._batch.cancelled(dispatch_id, status, self._clock.wall())
        return status

    # -- commit ----------------------------------------------------------------------

    async def _flush(self, now: float) -> None:
        """Commit this pass's group of writes, then act on what was committed."""
        p = self._batch.take(now)
        if not p.ops:
            return
        try:
            results = await write_many(self._writer, p.ops)
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("dispatcher could not commit (will retry): %s", exc)
            self._batch.failed(p)
            await self._clock.sleep_until(self._clock.now() + 1.0)
            return
        self._batch.committed(p, results, now)

    def _start(self, e: Entry, job: JobSpec, run_id: int, now: float) -> None:
        """Start the run actor of a committed claim (``Batch``'s ``start``)."""
        self.counters["admitted"] += 1
        attempt = e.attempt + 1
        mono = self._clock.now()
        self._runs.add(Running(run_id, e, attempt, job.pool, mono, mono))
        executor = self._executors.get(job.executor)
        if executor is None:
            error = f"no executor named {job.executor!r} in this runtime"
            self._batch.finished.append(
                RunFinished(
                    run_id=run_id, dispatch_id=e.id, outcome="error", retry=False, error=error
                )
            )
            return
        actor = partial(
            run_actor,
            order=run_order(e, job, run_id, attempt),
            executor=executor,
            clock=self._clock,
            report=self._self,
            data_dir=self._cfg.data_dir,
            host=self._host,
            on_heartbeat=partial(self._heartbeat, e.id),
        )
        self._runsup.start_child(run_id, actor)
        self._emit(
            RunStarted(dispatch_id=e.id, run_id=run_id, job=job.name, attempt=attempt, at=now)
        )

    def _heartbeat(self, dispatch_id: int, run_id: int, wall: float) -> None:
        self._runs.heartbeat(dispatch_id, run_id, self._clock.now(), wall)

    def _run_actor_died(self, run_id: int, exc: BaseException) -> None:
        r = self._runs.by_run(run_id)
        if r is not None:
            error = f"run actor died: {exc!r}"
            self._self.tell(
                RunFinished(run_id=run_id, dispatch_id=r.entry.id, outcome="crashed", error=error)
            )

    # -- introspection ---------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            **self._queue.statistics(),
            "running": len(self._runs),
            "draining": self._draining,
            "recovered": self.recovered,
            "recovery_seconds": round(self.recovery_seconds, 4),
            "breakers": self._breakers.statistics(),
            **self.counters,
        }

    def __repr__(self) -> str:
        return (
            f"<Dispatcher queued={len(self._queue)} running={len(self._runs)} "
            f"admitted={self.counters['admitted']}>"
        )
