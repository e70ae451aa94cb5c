"""The dispatcher: ready queue, admission, claims, run actors, finalization.

Role: hold every queued dispatch in memory (a heap by priority rank, not-before, seq;
a timer heap for future not-before times; parked lists for busy jobs and pools),
admit under the global cap and the admission rules (``actors.admission``), claim and
create runs in one transaction, start one run actor per attempt under its run
supervisor, and turn each outcome into done / retry / dead letter
(``actors.finalize``) in one transaction. Each loop iteration handles every message
that is waiting and commits what it decided as one group, so a burst of N dispatches
costs a few commits, not N.
Inbox: ``DispatcherMsg``. Sends: write ops to the store writer (ask), events to the
sink. Restart type: permanent; on (re)start it recovers orphaned runs (``actors.recovery``:
their process groups are killed first) and reloads the queue from the store. Timers:
the earliest future not-before time.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from shepherd.actors import admission, breaker
from shepherd.actors.clock import Clock
from shepherd.actors.dispatcher_commit import CommitMixin, _outcome, _Running
from shepherd.actors.dispatcher_health import HealthMixin
from shepherd.actors.executors.base import Executor
from shepherd.actors.mailbox import Address, Mailbox, receive_by
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
    Tick,
    entry_from_dispatch,
)
from shepherd.actors.recovery import PROCESSES, StoreProcesses, recover_orphans
from shepherd.actors.runsup import RunSupervisor
from shepherd.actors.writer import StoreMsg, write
from shepherd.store import queries
from shepherd.store.errors import StoreError
from shepherd.store.models import JobSpec
from shepherd.store.ops import (
    CancelDispatch,
    Heartbeats,
    Settle,
)
from shepherd.store.sqlite import SqliteStore

__all__ = ["Dispatcher", "DispatcherConfig"]

log = logging.getLogger("shepherd.dispatcher")


class DispatcherConfig(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    concurrency: int = 64
    pool_limits: dict[str, int] = msgspec.field(default_factory=dict)
    data_dir: str = "."
    max_batch: int = 2000
    breaker_fail_max: int = 5
    breaker_reset: float = 30.0
    stale_margin: float = 5.0  # past a deadline by this much, the health check steps in


class Dispatcher(CommitMixin, HealthMixin):
    def __init__(
        self,
        cfg: DispatcherConfig,
        *,
        store: SqliteStore,
        writer: Address[StoreMsg],
        mailbox: Mailbox[DispatcherMsg],
        executors: Mapping[str, Executor],
        clock: Clock,
        emit: Callable[[Event], None],
        services: dict[str, Any] | None = None,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._writer = writer
        self._mailbox = mailbox
        self._executors = executors
        self._clock = clock
        self._emit = emit
        self._services = {**(services or {}), PROCESSES: StoreProcesses(writer)}
        self._rng = random.Random()
        self._reset()

    def _reset(self) -> None:
        self._jobs: dict[int, JobSpec] = {}
        self._queued: dict[int, Entry] = {}
        self._ready: list[tuple[int, float, int, int]] = []
        self._delayed: list[tuple[float, int, int]] = []
        self._running: dict[int, _Running] = {}
        self._adm = admission.AdmissionState(self._cfg.pool_limits)
        self._finished: list[RunFinished] = []
        self._settles: list[tuple[Entry, Settle]] = []
        self._claims: list[Entry] = []
        self._ext_seq = 0
        self._poked: set[str] = set()  # flags of this batch's Pokes
        self._beats: dict[int, float] = {}
        self._breakers: dict[str, breaker.Breaker] = {}
        self._draining = False
        self._drained = False
        self._drain_reply: Any = None
        self.counters: dict[str, int] = dict.fromkeys(
            (
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
            ),
            0,
        )
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
            len(self._queued),
            self.recovery_seconds,
        )
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._runsup = RunSupervisor(
                "runs",
                max_children=self._cfg.concurrency,
                clock=self._clock,
                on_crash=self._run_actor_died,
            )
            await tg.start(self._runsup.run)
            self._self = self._mailbox.address()
            self._self.tell(Poke("-"))  # a first pass admits what was loaded from the store
            task_status.started()
            try:
                await self._loop(tg)
            finally:
                self._self.close()
                tg.cancel_scope.cancel()

    async def _loop(self, tg: TaskGroup) -> None:
        while True:
            try:
                first = await self._receive()
            except anyio.EndOfStream:
                return
            batch = self._mailbox.drain(first, self._cfg.max_batch) if first is not None else []
            self.counters["loops"] += 1
            for msg in batch:
                await self._handle(msg, tg)
            if self._poked:
                await self._reload()
            now = self._clock.wall()
            self._promote(now)
            if not self._draining:
                self._admit(now)
            await self._flush(now)
            if self._drained and not self._running and not self._finished:
                if self._drain_reply is not None:
                    self._drain_reply.set(self._drained_count)
                return

    async def _receive(self) -> DispatcherMsg | None:
        wake = self._delayed[0][0] if self._delayed else None
        return await receive_by(self._mailbox, self._clock, wake)

    async def _handle(self, msg: DispatcherMsg, tg: TaskGroup) -> None:
        match msg:
            case Enqueued(entries):
                for e in entries:
                    self._add(e)
            case RunFinished():
                self._finished.append(msg)
            case Cancel(dispatch_id, reply):
                reply.set(await self._cancel(dispatch_id))
            case Poke(what):
                self._poked.update(what.replace("-", ""))  # "-" only wakes: no _reload
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
                self._check_stale()
                if self._beats:
                    beats, self._beats = self._beats, {}
                    try:
                        await write(self._writer, Heartbeats(list(beats.items())))
                    except StoreError as exc:
                        log.error("heartbeats not written: %s", exc)
            case Probe(executor, healthy):
                b = self._breakers.get(executor) or self._new_breaker()
                self._breakers[executor] = breaker.on_probe(b, healthy, self._clock.wall())

    async def _drain_runs(self, grace: float) -> None:
        cancelled = await self._runsup.drain(grace)
        await self._self.send(Drained(cancelled))

    # -- loading -------------------------------------------------------------------

    async def _load_jobs(self, ids: list[int] | None = None) -> None:
        before: Mapping[int, JobSpec | None] = self._jobs  # replaced below, not changed
        if ids is None:
            rows = await self._store.read(queries.list_jobs)
            self._jobs = {r.id: r.spec for r in rows}
        else:
            before = {job_id: self._jobs.get(job_id) for job_id in ids}
            found = await self._store.read(queries.jobs_by_id, ids)  # only those: O(changed)
            for job_id in ids:
                row = found.get(job_id)
                if row is None:
                    self._jobs.pop(job_id, None)
                else:
                    self._jobs[job_id] = row.spec
        # the waiters of a changed job go back through admission (a disabled job's fires)
        self._ready_again(self._adm.parked.take_changed(before, self._jobs))

    async def _reload(self) -> None:
        """Once per batch, however many ``Poke``s it held: what other processes committed."""
        what, self._poked = self._poked, set()
        self.counters["reloads"] += 1
        if "j" in what:
            await self._load_jobs()
        if "d" in what or "j" in what:
            await self._load_queued(self._ext_seq, exclude_own=True)
        if "c" in what:
            for dispatch_id, status in await self._store.read(queries.cancel_requests):
                if status == "running":
                    await self._cancel(dispatch_id, write_through=False)

    async def _load_queued(self, after_seq: int, *, exclude_own: bool = False) -> None:
        rows = await self._store.read(
            queries.queued_since,
            after_seq,
            exclude_origin=self._cfg.instance if exclude_own else None,
        )
        for d in rows:
            self._ext_seq = max(self._ext_seq, d.seq)
            if d.job_id not in self._jobs:
                await self._load_jobs()
            self._add(entry_from_dispatch(d))

    def _add(self, e: Entry) -> None:
        if e.id in self._running:
            return
        old = self._queued.get(e.id)
        if old is not None and old.seq == e.seq:
            return
        self._queued[e.id] = e
        if e.not_before > self._clock.wall():
            heapq.heappush(self._delayed, (e.not_before, e.seq, e.id))
        else:
            heapq.heappush(self._ready, (*admission.ready_key(e), e.id))

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, seq, dispatch_id = heapq.heappop(self._delayed)
            e = self._queued.get(dispatch_id)
            if e is not None and e.seq == seq:
                heapq.heappush(self._ready, (*admission.ready_key(e), e.id))

    # -- admission -------------------------------------------------------------------

    def _admit(self, now: float) -> None:
        free = self._runsup.free - len(self._claims)
        while self._ready and free > 0:
            _, _, seq, dispatch_id = heapq.heappop(self._ready)
            e = self._queued.get(dispatch_id)
            if e is None or e.seq != seq:
                continue
            job = self._jobs.get(e.job_id)
            v = admission.check(e, job, self._adm, now)
            if v.action == "run" and job is not None and job.executor in self._breakers:
                b, ok = breaker.allow(self._breakers[job.executor], now)
                self._breakers[job.executor] = b
                if not ok:
                    until = breaker.deferred_until(b, now) or now + 1.0
                    v = admission.Verdict("defer", "circuit-open", until=until)
                    self.counters["deferred"] += 1
            if v.action == "run":
                assert job is not None
                del self._queued[e.id]
                self._claims.append(e)
                self._adm.running_by_job[e.job_id] += 1
                if job.pool:
                    self._adm.running_by_pool[job.pool] += 1
                free -= 1
            elif v.action in ("park", "replace"):
                assert v.key is not None
                if v.action == "replace":
                    for r in self._running.values():
                        if r.entry.job_id == e.job_id:
                            self._runsup.cancel(r.run_id, "replaced")
                self._adm.parked.park(v.key, e.id, e.job_id)
            elif v.action == "defer":
                assert v.until is not None
                moved = msgspec.structs.replace(e, not_before=v.until)
                self._queued[e.id] = moved
                heapq.heappush(self._delayed, (v.until, e.seq, e.id))
            else:  # it ends without running: settled, and its free keys passed on
                del self._queued[e.id]
                self._settles.append((e, admission.settle(e.id, v)))
                self._unpark(*admission.free_keys(e.job_id, job, self._adm))

    def _unpark(self, *keys: str) -> None:
        """Hand each key to its next waiter: a run holding it ended, or a dispatch that
        would have held it left the queue without running (``admission.free_keys``)."""
        for key in keys:
            dispatch_id = self._adm.parked.pop(key, self._queued)
            if dispatch_id is not None:
                self._ready_again([dispatch_id])
                self._self.tell(Poke("-"))  # unparked after this pass's admission: admit now

    def _ready_again(self, ids: list[int]) -> None:
        for e in filter(None, map(self._queued.get, ids)):
            heapq.heappush(self._ready, (*admission.ready_key(e), e.id))

    # -- cancel ----------------------------------------------------------------------

    async def _cancel(self, dispatch_id: int, *, write_through: bool = True) -> str | None:
        running = self._running.get(dispatch_id)
        if running is not None:
            self._runsup.cancel(running.run_id, "operator")
            return "running"
        if not write_through:
            return None
        try:
            status: str | None = await write(
                self._writer, CancelDispatch(dispatch_id, self._clock.wall())
            )
        except StoreError as exc:
            log.error("cancel of dispatch %s failed: %s", dispatch_id, exc)
            raise
        e = self._queued.pop(dispatch_id, None)
        if e is not None:
            self._unpark(*admission.free_keys(e.job_id, self._jobs.get(e.job_id), self._adm))
        if e is not None and status == "cancelled":
            self._emit(
                _outcome(
                    e,
                    self._job_name(e.job_id),
                    None,
                    e.attempt,
                    "cancelled",
                    "cancelled",
                    self._clock.wall(),
                    error="cancelled by operator",
                )
            )
        return status
