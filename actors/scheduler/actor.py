"""The scheduler actor: cron / every / one-shot timers become ``schedule`` dispatches.

Role: own the schedule of every enabled job that has one (a ``Timetable``: a heap of
commit times, wall clock: each slot ``lead`` before it, its dispatch's ``not_before``
the slot, so the dispatcher starts it at the slot however many commit at once; a slot
so committed is withdrawn by the store when its job changes first, and by the error
backoff here, ``Timetable.outcome``). Sleep until the earliest; when slots are due, the
timetable plans them (``plan.fire_item``: the misfire policy splits them into runs and
misses) and the actor commits them per job, atomically (``store.ops.RecordSlots``):
the dispatches of the slots that run (kind ``schedule``, at most one per (job, slot) by
a unique index), a ``skipped`` run row with its reason for every slot that does not,
and the job's next fire time; then it tells the dispatcher, which applies overlap,
pools and admission. Each job's next on-time commit is planned while idle, so a due
slot costs a lookup; many due jobs commit in chunks, one planned while the previous
commits. A job whose item fails on its own (a value the store cannot take) is logged
and moved on to its next slot; the other jobs in the op commit. When a schedule
dispatch ends for good, the OCS consecutive-error ladder applies to the next slot
(``plan.result_item``) and one-shot jobs finish (disabled, or deleted with
``delete_after_run``; a recurring job with ``delete_after_run`` is deleted after ok).

Inbox: ``SchedulerMsg`` = ``JobsChanged`` (reload these jobs, None = all) | ``Poke``
(``jobs``: another process changed jobs, reload all; ``approvals`` / ``cancels``: it
may have cancelled a fired one-shot's dispatch, whose end no event tells here: their
states are read again) | ``Outcome`` (a dispatch ended).
Sends: write ops to the store writer (ask), ``Enqueued`` / ``JobsChanged`` to the
dispatcher, ``SlotRecord`` events, ``Poke(approvals)`` to the approvals actor when a
slot's dispatch waits for an approval (it is not sent to the dispatcher).
Restart type: permanent; on (re)start it reloads every job from the store, which is
the truth, so a restart neither loses nor duplicates a slot. It also repairs what a
crash left: a recurring job without a next run, a one-shot job whose run ended
unseen. Timers: one, the earliest fire time (a cancel scope on the inbox receive),
capped at ``max_sleep`` so a step of the wall clock is noticed; after a failed
commit, its fires again ``retry_delay`` later. No fixed tick.
Leadership: only the scheduler leader fires slots (``Store.lead_scheduler``: on SQLite
the one runtime of the file, on PostgreSQL one node per database). A follower keeps
its timetable loaded, commits what outcomes and repairs ask (each a compare-and-set on
the job's next fire time), and asks for the leadership every ``leader_poll``; taking it
reloads every job. Should two leaders overlap, the ``(job, slot)`` unique index keeps
each slot to one dispatch. The module is long because that gate sits beside the
firing it gates.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, assert_never

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors.messages import (
    DispatcherMsg,
    Enqueued,
    Event,
    JobsChanged,
    Outcome,
    Poke,
    SchedulerMsg,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Mailbox, Reply
from shepherd.actors.scheduler.timetable import Plan, Timetable
from shepherd.actors.writer import StoreMsg, Write
from shepherd.store.errors import MailboxClosed, MailboxFull, StoreError
from shepherd.store.ops import RecordSlots
from shepherd.store.protocol import Store

__all__ = ["Scheduler", "SchedulerConfig"]

log = logging.getLogger("shepherd.scheduler")

_FINAL = ("done", "dead", "cancelled")


class SchedulerConfig(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    chunk: int = 500  # jobs per commit op when many fire at once (pipelined)
    max_sleep: float = 60.0  # re-read the wall clock at least this often
    retry_delay: float = 1.0  # after a failed commit
    leader_poll: float = 1.0  # a follower asks for the leadership this often
    # commit each slot's dispatch this long before the slot, ``not_before`` the slot
    # (``Timetable``): a boundary with many jobs due is committed by the time it comes
    lead: float = 0.0


_Sent = tuple[list[Plan], Reply[Any]]


class Scheduler:
    def __init__(
        self,
        cfg: SchedulerConfig,
        *,
        store: Store,
        writer: Address[StoreMsg],
        mailbox: Mailbox[SchedulerMsg],
        dispatcher: Address[DispatcherMsg],
        clock: Clock,
        emit: Callable[[Event], None],
        observe: Callable[[float, list[float]], None] | None = None,
        approvals: Address[Poke] | None = None,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._writer = writer
        self._mailbox = mailbox
        self._dispatcher = dispatcher
        self._clock = clock
        self._emit = emit
        self.observe = observe  # (commit wall time, slots committed): benchmarks, tests
        self._approvals = approvals  # told when a slot's dispatch waits for an approval
        self._reset()

    def _reset(self) -> None:
        self._table = Timetable(self._cfg.lead)
        self._pending: list[Plan] = []
        self._stale: set[int] = set()
        self._busy = True
        self.leading = False
        self.checked_at = self.late_last = self.late_max = 0.0
        self.last_error: str | None = None
        names = (
            "fired missed backoff duplicates finished stale store_errors slot_errors loops"
            " leadership_changes"
        )
        self.counters = dict.fromkeys(names.split(), 0)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._reset()
        self.leading = await self._lead()
        if not self.leading:
            log.info("scheduler: %s follows; another node leads", self._cfg.instance)
        await self._reload(None, self._clock.wall())
        task_status.started()
        batch: list[SchedulerMsg] = []  # the first pass fires what came due while down
        while True:
            self.counters["loops"] += 1
            now = self._clock.wall()
            reload: set[int] | None = set()
            recheck = False
            for msg in batch:
                match msg:
                    case JobsChanged(ids):
                        reload = None if ids is None or reload is None else reload | set(ids)
                    case Poke(jobs=jobs):
                        reload = None if jobs else reload
                        recheck = recheck or msg.approvals or msg.cancels
                    case Outcome():
                        plan = self._table.outcome(msg, now)
                        if plan is not None:
                            self._pending.append(plan)
                    case _:
                        assert_never(msg)
            await self._flush(now)  # outcomes first: they may move a next slot
            stale, self._stale = self._stale, set()
            if reload is None or reload or stale:
                await self._reload(None if reload is None else reload | stale, now)
            if recheck:
                await self._end_fired(self._table.fired())
            if await self._still_leads(now):
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
        due = self._table.next_due() if self.leading else None
        while self._table.unready and (due is None or due > self._clock.wall() + 0.05):
            self._table.prepare(128)  # idle time: plan the next slots ahead (cron maths)
            try:
                return self._mailbox.receive_nowait()
            except anyio.WouldBlock:
                await anyio.lowlevel.checkpoint()
        deadline = self._clock.wall() + self._cfg.max_sleep
        if not self.leading:
            deadline = min(deadline, self._clock.wall() + self._cfg.leader_poll)
        if due is not None:
            deadline = min(deadline, due)
        with anyio.CancelScope() as scope:
            self._clock.cancel_at(scope, self._clock.mono_for_wall(deadline))
            return await self._mailbox.receive()
        return None

    async def _reload(self, ids: set[int] | None, now: float) -> None:
        if ids is None:
            rows = {r.id: r for r in await self._store.jobs()}
        else:
            rows = await self._store.jobs_by_id(sorted(ids))
        repairs, ended = self._table.load(rows, ids, now)
        self._pending.extend(repairs)
        await self._end_fired(ended)

    async def _end_fired(self, fired: list[int]) -> None:
        """Finish the fired one-shot jobs among ``fired`` whose dispatch has ended."""
        states = await self._store.schedule_states(fired) if fired else {}
        for job_id in fired:
            if states.get(job_id) in _FINAL:
                self._pending.append(self._table.finish(job_id))

    # -- leadership ----------------------------------------------------------------

    async def _lead(self) -> bool:
        try:
            return await self._store.lead_scheduler(self._cfg.instance)
        except StoreError as exc:
            self.last_error = str(exc)
            return False

    async def _still_leads(self, now: float) -> bool:
        """Whether this runtime leads the scheduler (``Store.lead_scheduler``). Taking
        the leadership reloads every job first: the previous leader moved their next
        fire times while this one followed."""
        leads = await self._lead()
        if leads != self.leading:
            self.leading = leads
            self.counters["leadership_changes"] += 1
            if leads:
                log.info("scheduler: %s leads; slots fire here", self._cfg.instance)
                await self._reload(None, now)
            else:
                log.warning(
                    "scheduler: %s no longer leads; slots fire elsewhere", self._cfg.instance
                )
        return leads

    # -- committing ----------------------------------------------------------------

    async def _fire(self, now: float) -> None:
        sent: list[_Sent] = []
        for plan in self._table.due(now):
            self._pending.append(plan)
            if len(self._pending) >= self._cfg.chunk:  # one chunk commits, one is planned
                sent.append(await self._send(now))
                if len(sent) > 1:  # at most two in flight: early slots commit early
                    await self._settle(*sent.pop(0), now)
        await self._flush(now, sent)

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

    async def _settle(self, chunk: list[Plan], reply: Reply[Any], now: float) -> None:
        try:
            results: list[Any] = await reply.wait()
        except StoreError as exc:
            self.counters["store_errors"] += 1
            self.last_error = str(exc)
            log.error("scheduler could not commit %d jobs (will retry): %s", len(chunk), exc)
            self._table.retry(chunk, now + self._cfg.retry_delay)
            return
        done = self._clock.wall()
        s = self._table.settle(chunk, results, now)
        self._pending.extend(s.follow)
        self._stale.update(s.stale)
        self.counters["stale"] += len(s.stale)
        self.counters["duplicates"] += s.duplicates
        self.counters["finished"] += len(s.finished)
        for job, error in s.failed:
            self.counters["slot_errors"] += 1
            self.last_error = f"job {job}: {error}"
            log.error("scheduler could not commit a slot of job %s (moved on): %s", job, error)
        for record in s.records:
            self.counters["backoff" if record.reason == "backoff" else "missed"] += 1
            self._emit(record)
        if s.entries:
            self.counters["fired"] += len(s.entries)
            await self._dispatcher.send(Enqueued(s.entries))
            slots = [e.slot if e.slot is not None else now for e in s.entries]
            self.late_last = max(0.0, max(done - slot for slot in slots))  # ahead: 0
            self.late_max = max(self.late_max, self.late_last)
            if self.observe is not None:
                self.observe(done, slots)
        if s.held and self._approvals is not None:
            with contextlib.suppress(MailboxFull, MailboxClosed):  # one waiting covers it
                self._approvals.tell(Poke(approvals=True))
        if s.finished:
            await self._dispatcher.send(JobsChanged(s.finished))
        if s.withdrew:  # the dispatcher holds those slots: it ends them, heard as any end
            await self._dispatcher.send(JobsChanged(s.withdrew, withdrawn=True))

    # -- introspection -------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        mb = self._mailbox.statistics()
        return {
            "inbox": mb["depth"],
            # blocked in receive with nothing waiting (tests: "has it caught up?")
            "idle": not self._busy and mb["depth"] == 0 and mb["waiting"] > 0,
            "busy": self._busy,
            "leader": self.leading,
            "jobs": len(self._table),
            "next_due": self._table.peek(),
            "checked_at": self.checked_at,
            "late_last_ms": round(self.late_last * 1000, 3),
            "late_max_ms": round(self.late_max * 1000, 3),
            "last_error": self.last_error,
            **self.counters,
        }

    def __repr__(self) -> str:
        return f"<Scheduler jobs={len(self._table)} fired={self.counters['fired']}>"
