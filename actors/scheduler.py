"""The scheduler: cron / every / one-shot timers become ``schedule`` dispatches.

Role: own the schedule of every enabled job that has one: a heap of next fire times
(wall clock). Sleep until the earliest; when slots are due, let ``schedule_plan.fire_item``
(``plan_slots``, the misfire policy) split them into runs and misses, and commit per
job, atomically (``store.ops.RecordSlots``), the dispatches of the slots that run
(kind ``schedule``, at most one per (job, slot) by a unique index), a ``skipped`` run
row with its reason for every slot that does not, and the job's next fire time; then
tell the dispatcher, which applies overlap, pools and admission. Each job's next
on-time commit is prepared while idle (the cron maths), so a due slot costs a lookup;
many due jobs commit in chunks, one planned while the previous commits. When a
schedule dispatch ends for good, apply the OCS consecutive-error ladder to the next
slot (``schedule_plan.result_item``) and finish one-shot jobs (disabled, or deleted with
``delete_after_run``; a recurring job with ``delete_after_run`` is deleted after ``ok``).
Inbox: ``SchedulerMsg`` = ``JobsChanged`` (reload these jobs, None = all) | ``Poke``
(``"j"``: another process changed jobs) | ``Outcome``. Sends: write ops to the store
writer (ask), ``Enqueued`` / ``JobsChanged`` to the dispatcher, ``SlotRecord`` events.
Restart type: permanent; on (re)start it reloads every job from the store, which is
the truth, so a restart neither loses nor duplicates a slot. It also repairs what a
crash left: a recurring job without a next run, a one-shot job whose run ended
unseen. Timers: one, the earliest fire time (a cancel scope on the inbox receive),
capped at ``max_sleep`` so a step of the wall clock is noticed. No fixed tick.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, assert_never

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors import schedule, schedule_plan
from shepherd.actors.clock import Clock
from shepherd.actors.mailbox import Address, Mailbox, Reply
from shepherd.actors.messages import (
    DispatcherMsg,
    Enqueued,
    Entry,
    Event,
    JobsChanged,
    Outcome,
    Poke,
    SchedulerMsg,
    SlotRecord,
    entry_from_new,
)
from shepherd.actors.writer import StoreMsg, Write
from shepherd.store import queries
from shepherd.store.errors import StoreError
from shepherd.store.models import JobRow
from shepherd.store.ops import RecordSlots, SlotItem
from shepherd.store.sqlite import SqliteStore

__all__ = ["Outcome", "Scheduler", "SchedulerConfig", "SchedulerMsg"]

log = logging.getLogger("shepherd.scheduler")

_FINAL = ("done", "dead", "cancelled")


class SchedulerConfig(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    chunk: int = 500  # jobs per commit op when many fire at once (pipelined)
    max_sleep: float = 60.0  # re-read the wall clock at least this often
    retry_delay: float = 1.0  # after a failed commit


class _Job:
    __slots__ = ("anchor", "errors", "next", "ready", "spec", "stored", "version")

    def __init__(self, row: JobRow) -> None:
        self.spec = row.spec
        self.next = row.next_run_at  # when it fires
        self.stored = row.next_run_at  # what the store holds (compare-and-set)
        self.anchor = row.anchor
        self.errors = row.consecutive_errors
        self.version = 0
        self.ready: SlotItem | None = None  # the commit for ``next``, prepared while idle


class _Plan(msgspec.Struct):
    """A ``SlotItem`` to commit and the job state version it was planned from."""

    item: SlotItem
    version: int  # -1: bookkeeping only, it moves no state
    fire: bool = False  # a fire: retried if the commit fails


_Sent = tuple[list[_Plan], Reply[Any]]


class Scheduler:
    def __init__(
        self,
        cfg: SchedulerConfig,
        *,
        store: SqliteStore,
        writer: Address[StoreMsg],
        mailbox: Mailbox[SchedulerMsg],
        dispatcher: Address[DispatcherMsg],
        clock: Clock,
        emit: Callable[[Event], None],
        observe: Callable[[float, list[float]], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._writer = writer
        self._mailbox = mailbox
        self._dispatcher = dispatcher
        self._clock = clock
        self._emit = emit
        self.observe = observe  # (commit wall time, slots committed): benchmarks, tests
        self._reset()

    def _reset(self) -> None:
        self._jobs: dict[int, _Job] = {}
        self._heap: list[tuple[float, int, int]] = []  # (fire time, version, job id)
        self._versions = itertools.count(1)
        self._pending: list[_Plan] = []
        self._stale: set[int] = set()
        self._unready: deque[tuple[int, int]] = deque()  # (job id, version) to prepare
        self._busy = True
        self.checked_at = self.late_last = self.late_max = 0.0
        names = "fired missed backoff duplicates finished stale store_errors loops"
        self.counters = dict.fromkeys(names.split(), 0)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._reset()
        await self._reload(None, self._clock.wall())
        task_status.started()
        batch: list[SchedulerMsg] = []  # the first pass fires what came due while down
        while True:
            self.counters["loops"] += 1
            now = self._clock.wall()
            reload: set[int] | None = set()
            for msg in batch:
                match msg:
                    case JobsChanged(ids):
                        reload = None if ids is None or reload is None else reload | set(ids)
                    case Poke(what):
                        reload = None if "j" in what else reload
                    case Outcome():
                        self._on_outcome(msg, now)
                    case _:
                        assert_never(msg)
            await self._flush(now)  # outcomes first: they may move a next slot
            stale, self._stale = self._stale, set()
            if reload is None or reload or stale:
                await self._reload(None if reload is None else reload | stale, now)
            await self._fire(now)
            self.checked_at, self._busy = now, False
            try:
                first = await self._receive()
            except anyio.EndOfStream:
                return
            self._busy = True
            batch = self._mailbox.drain(first, 10_000) if first is not None else []

    async def _receive(self) -> SchedulerMsg | None:
        if self._pending or self._stale:
            try:
                return self._mailbox.receive_nowait()
            except anyio.WouldBlock:
                return None
        while self._heap and not self._valid(self._heap[0]):
            heapq.heappop(self._heap)
        while self._unready and (not self._heap or self._heap[0][0] > self._clock.wall() + 0.05):
            self._prepare(128)  # idle time: plan the next slots ahead (cron maths)
            try:
                return self._mailbox.receive_nowait()
            except anyio.WouldBlock:
                await anyio.lowlevel.checkpoint()
        deadline = self._clock.wall() + self._cfg.max_sleep
        if self._heap:
            deadline = min(deadline, self._heap[0][0])
        with anyio.CancelScope() as scope:
            self._clock.cancel_at(scope, self._clock.mono_for_wall(deadline))
            return await self._mailbox.receive()
        return None

    def _valid(self, entry: tuple[float, int, int]) -> bool:
        st = self._jobs.get(entry[2])
        return st is not None and st.version == entry[1]

    def _push(self, job_id: int, st: _Job, when: float | None) -> None:
        """A new version of the job's state; its older heap entries are dead."""
        st.version, st.ready = next(self._versions), None
        if when is not None:
            heapq.heappush(self._heap, (when, st.version, job_id))
            self._unready.append((job_id, st.version))
        if len(self._heap) > 2 * len(self._jobs) + 1024:  # drop dead entries
            self._heap = [e for e in self._heap if self._valid(e)]
            heapq.heapify(self._heap)

    # -- loading -------------------------------------------------------------------

    async def _reload(self, ids: set[int] | None, now: float) -> None:
        if ids is None:
            rows = {r.id: r for r in await self._store.read(queries.list_jobs)}
            ids = set(self._jobs) | set(rows)
        else:
            rows = await self._store.read(queries.jobs_by_id, sorted(ids))
        ended: list[int] = []  # one-shot jobs that fired: did their run end unseen?
        for job_id in ids:
            row = rows.get(job_id)
            if row is None or not row.spec.enabled or not schedule_plan.scheduled(row.spec):
                self._jobs.pop(job_id, None)
                continue
            old = self._jobs.get(job_id)
            if old is not None and (old.spec, old.stored, old.anchor) == (
                row.spec,
                row.next_run_at,
                row.anchor,
            ):
                old.errors = row.consecutive_errors  # unchanged: keep its timer and plan
                continue
            st = self._jobs[job_id] = _Job(row)
            repair = st.next is None and st.spec.at is None
            if repair:  # D8: a recurring job without a next run gets one
                st.next = schedule.next_fire(st.spec, now, anchor=st.anchor)
            elif st.next is None:
                ended.append(job_id)
            self._push(job_id, st, st.next)
            if repair:
                item = SlotItem(job_id=job_id, job_name=st.spec.name, next_run_at=st.next)
                self._pending.append(_Plan(item, st.version))
        states = await self._store.read(queries.schedule_states, ended) if ended else {}
        for job_id in ended:
            if states.get(job_id) in _FINAL:
                self._finish(job_id, self._jobs[job_id])

    def _prepare(self, budget: int) -> None:
        while self._unready and budget > 0:
            job_id, version = self._unready.popleft()
            st = self._jobs.get(job_id)
            if st is not None and st.version == version and st.next is not None:
                args = (job_id, st.spec, st.next, st.stored, st.next)  # as if on time
                st.ready = schedule_plan.fire_item(*args, anchor=st.anchor)
                budget -= 1

    def _finish(self, job_id: int, st: _Job, msg: Outcome | None = None) -> None:
        outcome, at = (msg.outcome, msg.at) if msg else (None, None)
        self._pending.append(
            _Plan(schedule_plan.finish_item(job_id, st.spec, st.errors, outcome, at), -1)
        )

    # -- firing and outcomes -------------------------------------------------------

    async def _fire(self, now: float) -> None:
        sent: list[_Sent] = []
        while self._heap and self._heap[0][0] <= now:
            _, version, job_id = heapq.heappop(self._heap)
            st = self._jobs.get(job_id)
            if st is None or st.version != version or st.next is None:
                continue
            args = (job_id, st.spec, st.next, st.stored, now)
            item = schedule_plan.fire_item(*args, anchor=st.anchor, ready=st.ready)
            self._pending.append(_Plan(item, st.version, fire=True))
            if len(self._pending) >= self._cfg.chunk:  # one chunk commits, one is planned
                sent.append(await self._send(now))
                if len(sent) > 1:  # at most two in flight: early slots commit early
                    await self._settle(*sent.pop(0), now)
        await self._flush(now, sent)

    def _on_outcome(self, msg: Outcome, now: float) -> None:
        if not msg.final or msg.kind != "schedule" or msg.outcome == "skipped":
            return
        st = self._jobs.get(msg.job_id)
        if st is None:  # disabled or removed since: keep its record, nothing to schedule
            self._pending.append(
                _Plan(schedule_plan.status_item(msg.job_id, msg.job, msg.outcome, msg.at), -1)
            )
            return
        st.errors = schedule_plan.count_errors(st.errors, msg.outcome)
        if schedule_plan.ends_after(st.spec, msg.outcome):
            self._finish(msg.job_id, st, msg)
            return
        state = (msg.outcome, msg.at, st.errors, st.next, st.stored, now)
        item = schedule_plan.result_item(msg.job_id, st.spec, *state, anchor=st.anchor)
        self._pending.append(_Plan(item, st.version))

    # -- committing ----------------------------------------------------------------

    async def _send(self, now: float) -> _Sent:
        chunk, self._pending = self._pending, []
        reply: Reply[Any] = Reply()
        op = RecordSlots([p.item for p in chunk], self._cfg.instance, now)
        await self._writer.send(Write(op, reply))
        return chunk, reply

    async def _flush(self, now: float, sent: list[_Sent] | None = None) -> None:
        sent = sent or []
        while self._pending:
            sent.append(await self._send(now))
        for chunk, reply in sent:
            await self._settle(chunk, reply, now)

    async def _settle(self, chunk: list[_Plan], reply: Reply[Any], now: float) -> None:
        try:
            results: list[Any] = await reply.wait()
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("scheduler could not commit %d jobs (will retry): %s", len(chunk), exc)
            for p in chunk:
                if p.fire and self._valid((0.0, p.version, p.item.job_id)):
                    retry = (now + self._cfg.retry_delay, p.version, p.item.job_id)
                    heapq.heappush(self._heap, retry)
            return
        done = self._clock.wall()
        entries: list[Entry] = []
        changed: list[int] = []
        for p, result in zip(chunk, results, strict=True):
            item, job_id = p.item, p.item.job_id
            if result is None:  # the job changed, was disabled or removed meanwhile
                self.counters["stale"] += 1
                self._stale.add(job_id)
                continue
            st = self._jobs.get(job_id)
            for new, got in zip(item.dispatches, result, strict=True):
                if got is not None:
                    entries.append(entry_from_new(new, *got))
                    continue
                self.counters["duplicates"] += 1  # this slot already has its dispatch
                if st is not None and st.spec.at is not None:  # a one-shot that ran
                    self._finish(job_id, st)
            for s in item.skipped:
                self.counters["backoff" if s.reason == "backoff" else "missed"] += 1
                self._emit(SlotRecord(job=item.job_name, reason=s.reason, slot=s.slot, at=now))
            if item.finish:
                self.counters["finished"] += 1
                self._jobs.pop(job_id, None)
                changed.append(job_id)
            elif st is not None and st.version == p.version and item.set_next:
                st.stored = st.next = item.next_run_at
                self._push(job_id, st, st.next)
        if entries:
            self.counters["fired"] += len(entries)
            await self._dispatcher.send(Enqueued(entries))
            slots = [e.slot if e.slot is not None else now for e in entries]
            self.late_last = max(done - s for s in slots)
            self.late_max = max(self.late_max, self.late_last)
            if self.observe is not None:
                self.observe(done, slots)
        if changed:
            await self._dispatcher.send(JobsChanged(changed))

    # -- introspection -------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        valid = [e[0] for e in self._heap[:64] if self._valid(e)]
        mb = self._mailbox.statistics()
        return {
            "inbox": mb["depth"],
            # blocked in receive with nothing waiting (tests: "has it caught up?")
            "idle": not self._busy and mb["depth"] == 0 and mb["waiting"] > 0,
            "busy": self._busy,
            "jobs": len(self._jobs),
            "next_due": min(valid) if valid else None,
            "checked_at": self.checked_at,
            "late_last_ms": round(self.late_last * 1000, 3),
            "late_max_ms": round(self.late_max * 1000, 3),
            **self.counters,
        }

    def __repr__(self) -> str:
        return f"<Scheduler jobs={len(self._jobs)} fired={self.counters['fired']}>"
