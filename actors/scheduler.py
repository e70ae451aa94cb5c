"""The scheduler: cron / every / one-shot timers become ``schedule`` dispatches.

Role: own the schedule of every enabled job that has one: a heap of next fire times
(wall clock). Sleep until the earliest; when slots are due, let
``schedule.plan_slots`` split them into runs and misses (misfire policy) and commit,
per job and atomically (``store.ops.RecordSlots``), the dispatches of the slots that
run (kind ``schedule``, at most one per (job, slot) by a unique index), a ``skipped``
run row with its reason for every slot that does not, and the job's next fire time;
then tell the dispatcher, which applies overlap, pools and admission. When a schedule
dispatch ends for good, apply the OCS consecutive-error ladder to the next slot
(``schedule.backed_off``) and finish one-shot jobs (disabled, or deleted with
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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, assert_never

import anyio
import msgspec
from anyio.abc import TaskStatus

from actors.clock import Clock
from actors.mailbox import Address, Mailbox, Reply
from actors.messages import DispatcherMsg, Enqueued, Entry, Event, JobsChanged, Poke, SlotRecord
from actors.schedule import backed_off, next_fire, plan_slots, slot_key
from actors.writer import StoreMsg, Write
from store import queries
from store.errors import StoreError
from store.models import JobRow, JobSpec, encode_json, priority_rank
from store.ops import NewDispatch, RecordSlots, SkippedSlot, SlotItem
from store.sqlite import SqliteStore

__all__ = ["Outcome", "Scheduler", "SchedulerConfig", "SchedulerMsg"]

log = logging.getLogger("shepherd.scheduler")

_FAILED = ("error", "timeout", "crashed")
_FINAL = ("done", "dead", "cancelled")


class Outcome(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A schedule dispatch ended (from the dispatcher's ``OutcomeEvent``)."""

    job_id: int
    job: str
    dispatch_id: int
    outcome: str
    final: bool
    slot: float | None
    kind: str
    at: float


SchedulerMsg = JobsChanged | Poke | Outcome


class SchedulerConfig(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    chunk: int = 500  # jobs per commit op when many fire at once (pipelined)
    max_sleep: float = 60.0  # re-read the wall clock at least this often
    retry_delay: float = 1.0  # after a failed commit


class _Job:
    __slots__ = ("anchor", "errors", "next", "spec", "stored", "version")

    def __init__(self, row: JobRow, version: int) -> None:
        self.spec: JobSpec = row.spec
        self.next: float | None = row.next_run_at  # when it fires
        self.stored: float | None = row.next_run_at  # what the store holds (CAS)
        self.anchor = row.anchor
        self.errors = row.consecutive_errors
        self.version = version


class _Plan(msgspec.Struct):
    """What one committed ``SlotItem`` means to the scheduler once it is written."""

    job_id: int
    version: int  # of the job state it was planned from; -1: bookkeeping only
    next: float | None
    fire: bool = False
    finish: bool = False


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
        self._pending: list[tuple[SlotItem, _Plan]] = []
        self._stale: set[int] = set()
        self.checked_at = 0.0
        self._busy = True
        self.late_last = self.late_max = 0.0
        self.counters = dict.fromkeys(
            (
                "fired",
                "missed",
                "backoff",
                "duplicates",
                "finished",
                "stale",
                "store_errors",
                "loops",
            ),
            0,
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._reset()
        now = self._clock.wall()
        await self._reload(None, now)
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
            self.checked_at = now
            self._busy = False
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
        st.version = next(self._versions)
        if when is not None:
            heapq.heappush(self._heap, (when, st.version, job_id))
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
            spec = row.spec if row is not None else None
            if row is None or spec is None or not spec.enabled or not _scheduled(spec):
                self._jobs.pop(job_id, None)
                continue
            st = self._jobs[job_id] = _Job(row, 0)
            repair = st.next is None and spec.at is None
            if repair:  # D8: a recurring job without a next run gets one
                st.next = next_fire(spec, now, anchor=st.anchor)
            elif st.next is None:
                ended.append(job_id)
            self._push(job_id, st, st.next)
            if repair:
                item = SlotItem(job_id=job_id, job_name=spec.name, next_run_at=st.next)
                self._pending.append((item, _Plan(job_id, st.version, st.next)))
        if ended:
            states = await self._store.read(queries.schedule_states, ended)
            for job_id in ended:
                if states.get(job_id) in _FINAL:
                    self._finish(self._jobs[job_id], job_id, None, now)

    # -- firing --------------------------------------------------------------------

    async def _fire(self, now: float) -> None:
        sent: list[tuple[list[tuple[SlotItem, _Plan]], Reply[Any]]] = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            st = self._jobs.get(entry[2])
            if st is None or st.version != entry[1] or st.next is None:
                continue
            self._pending.append(self._plan(entry[2], st, st.next, now))
            if len(self._pending) >= self._cfg.chunk:
                sent.append(await self._send(now))
                while len(sent) > 1 and sent[0][1].done:
                    await self._settle(*sent.pop(0), now)
        await self._flush(now, sent)

    def _plan(self, job_id: int, st: _Job, due: float, now: float) -> tuple[SlotItem, _Plan]:
        spec = st.spec
        plan = plan_slots(spec, due, now, anchor=st.anchor)
        why = f"(misfire {spec.misfire})"
        skipped = [
            SkippedSlot(slot=s, reason="missed", error=f"slot {_iso(s)} missed {why}")
            for s in plan.missed
        ]
        if plan.truncated:
            skipped.append(
                SkippedSlot(
                    slot=None, reason="missed", error=f"more slots before {_iso(now)} missed {why}"
                )
            )
        item = SlotItem(
            job_id=job_id,
            job_name=spec.name,
            expect_next=st.stored,
            next_run_at=plan.next_run_at,
            skipped=skipped,
            dispatches=[_new_dispatch(job_id, spec, slot, now) for slot in plan.run],
        )
        return item, _Plan(job_id, st.version, plan.next_run_at, fire=True)

    # -- outcomes ------------------------------------------------------------------

    def _on_outcome(self, msg: Outcome, now: float) -> None:
        if not msg.final or msg.kind != "schedule" or msg.outcome == "skipped":
            return
        st = self._jobs.get(msg.job_id)
        if st is None:  # disabled or removed since: keep its record, nothing to schedule
            item = SlotItem(
                job_id=msg.job_id,
                job_name=msg.job,
                set_next=False,
                last_run_at=msg.at,
                last_status=msg.outcome,
            )
            self._pending.append((item, _Plan(msg.job_id, -1, None)))
            return
        spec = st.spec
        st.errors = 0 if msg.outcome == "ok" else st.errors + (msg.outcome in _FAILED)
        if spec.at is not None or (spec.delete_after_run and msg.outcome == "ok"):
            self._finish(st, msg.job_id, msg, now)
            return
        upcoming, passed = backed_off(spec, st.next, now, st.errors, anchor=st.anchor)
        why = f"error backoff after {st.errors} consecutive errors until {_iso(upcoming)}"
        item = SlotItem(
            job_id=msg.job_id,
            job_name=spec.name,
            expect_next=st.stored,
            set_next=bool(passed),
            next_run_at=upcoming,
            last_run_at=msg.at,
            last_status=msg.outcome,
            consecutive_errors=st.errors,
            skipped=[
                SkippedSlot(slot=s, reason="backoff", error=f"slot {_iso(s)}: {why}")
                for s in passed
            ],
        )
        self._pending.append((item, _Plan(msg.job_id, st.version, upcoming)))

    def _finish(self, st: _Job, job_id: int, msg: Outcome | None, now: float) -> None:
        """End a job after its last run: deleted with delete_after_run, else disabled."""
        spec = st.spec
        delete = spec.delete_after_run
        item = SlotItem(
            job_id=job_id,
            job_name=spec.name,
            set_next=False,
            last_run_at=msg.at if msg else None,
            last_status=msg.outcome if msg else None,
            consecutive_errors=st.errors,
            finish="delete" if delete else "disable",
            spec=None if delete else encode_json(msgspec.structs.replace(spec, enabled=False)),
        )
        self._pending.append((item, _Plan(job_id, st.version, None, finish=True)))

    # -- committing ----------------------------------------------------------------

    async def _send(self, now: float) -> tuple[list[tuple[SlotItem, _Plan]], Reply[Any]]:
        chunk, self._pending = self._pending, []
        reply: Reply[Any] = Reply()
        op = RecordSlots([item for item, _ in chunk], self._cfg.instance, now)
        await self._writer.send(Write(op, reply))
        return chunk, reply

    async def _flush(
        self, now: float, sent: list[tuple[list[tuple[SlotItem, _Plan]], Reply[Any]]] | None = None
    ) -> None:
        sent = sent or []
        while self._pending:
            sent.append(await self._send(now))
        for chunk, reply in sent:
            await self._settle(chunk, reply, now)

    async def _settle(
        self, chunk: list[tuple[SlotItem, _Plan]], reply: Reply[Any], now: float
    ) -> None:
        try:
            results: list[Any] = await reply.wait()
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("scheduler could not commit %d jobs (will retry): %s", len(chunk), exc)
            for _, p in chunk:
                st = self._jobs.get(p.job_id)
                if p.fire and st is not None and st.version == p.version:
                    heapq.heappush(self._heap, (now + self._cfg.retry_delay, p.version, p.job_id))
            return
        done = self._clock.wall()
        entries: list[Entry] = []
        slots: list[float] = []
        changed: list[int] = []
        for (item, p), result in zip(chunk, results, strict=True):
            if result is None:  # the job changed, was disabled or removed meanwhile
                self.counters["stale"] += 1
                self._stale.add(p.job_id)
                continue
            st = self._jobs.get(p.job_id)
            for new, got in zip(item.dispatches, result, strict=True):
                if got is None:  # this slot already has its dispatch
                    self.counters["duplicates"] += 1
                    if st is not None and st.spec.at is not None:
                        self._finish(st, p.job_id, None, now)
                    continue
                entries.append(_entry(new, *got))
                slots.append(new.slot or now)
            for s in item.skipped:
                self.counters["backoff" if s.reason == "backoff" else "missed"] += 1
                self._emit(SlotRecord(job=item.job_name, reason=s.reason, slot=s.slot, at=now))
            if p.finish:
                self.counters["finished"] += 1
                self._jobs.pop(p.job_id, None)
                changed.append(p.job_id)
            elif st is not None and st.version == p.version and item.set_next:
                st.stored = st.next = p.next
                self._push(p.job_id, st, p.next)
        if entries:
            self.counters["fired"] += len(entries)
            await self._dispatcher.send(Enqueued(entries))
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
            "jobs": len(self._jobs),
            "next_due": min(valid) if valid else None,
            "busy": self._busy,
            "checked_at": self.checked_at,
            "late_last_ms": round(self.late_last * 1000, 3),
            "late_max_ms": round(self.late_max * 1000, 3),
            **self.counters,
        }

    def __repr__(self) -> str:
        return f"<Scheduler jobs={len(self._jobs)} fired={self.counters['fired']}>"


def _scheduled(spec: JobSpec) -> bool:
    return spec.cron is not None or spec.every is not None or spec.at is not None


def _iso(t: float | None) -> str:
    if t is None:
        return "never"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _new_dispatch(job_id: int, spec: JobSpec, slot: float, now: float) -> NewDispatch:
    return NewDispatch(
        job_id=job_id,
        job_name=spec.name,
        kind="schedule",
        priority=priority_rank(spec.priority),
        not_before=slot,
        max_attempts=spec.retry.max_attempts,
        expires_at=now + float(spec.expires_in) if spec.expires_in is not None else None,
        idempotency_key=slot_key(job_id, slot),
        slot=slot,
    )


def _entry(new: NewDispatch, dispatch_id: int, seq: int) -> Entry:
    return Entry(
        id=dispatch_id,
        seq=seq,
        job_id=new.job_id,
        priority=new.priority,
        not_before=new.not_before,
        attempt=0,
        max_attempts=new.max_attempts,
        kind=new.kind,
        expires_at=new.expires_at,
        idempotency_key=new.idempotency_key,
        slot=new.slot,
    )
