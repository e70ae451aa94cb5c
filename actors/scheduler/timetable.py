"""The scheduler's timetable: each scheduled job's timer state and a heap of fire times.

Owned by the scheduler actor and used only inside its loop. No I/O and no clock: every
method takes the wall-clock ``now`` it needs and returns the commits to make (``Plan``,
a ``store.ops.SlotItem`` with the job version it was planned from) or what a commit's
results mean (``Settled``); the actor performs them.

Per job (``JobState``): the spec, ``next`` (when it fires), ``stored`` (the store's
``next_run_at``, the compare-and-set value), the ``every`` grid anchor, the
consecutive-error count, a version, and ``ready``, the commit for ``next`` planned
ahead while the actor is idle (the cron maths off the hot path). A job's timer moves
by a new version; heap entries of older versions are dead and skipped when they come
up (lazy deletion; the heap is compacted when dead entries outnumber the live ones).

A commit result per item (``RecordSlots``): ``None`` - the job changed behind the
scheduler (reload it); a list - each dispatch's ``(id, seq)``, ``None`` where the slot
already had one, seq 0 where the job's approval gate held it (not for the dispatcher);
``SlotFailed`` - that item alone was rolled back: the failure is reported and a fired
job moves on to its next slot, so one bad job never holds others.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

from shepherd.actors.messages import Entry, Outcome, SlotRecord, entry_from_new
from shepherd.actors.scheduler.cron import next_fire
from shepherd.actors.scheduler.plan import (
    count_errors,
    ends_after,
    finish_item,
    fire_item,
    result_item,
    scheduled,
    status_item,
)
from shepherd.store.models import JobRow, JobSpec
from shepherd.store.ops import SlotFailed, SlotItem

__all__ = ["JobState", "Plan", "Settled", "Timetable"]


class JobState:
    __slots__ = ("ahead", "anchor", "errors", "next", "ready", "spec", "stored", "version")

    def __init__(self, row: JobRow) -> None:
        self.spec = row.spec
        self.next = row.next_run_at  # when it fires
        self.stored = row.next_run_at  # what the store holds (compare-and-set)
        self.anchor = row.anchor
        self.errors = row.consecutive_errors
        self.version = 0
        self.ready: SlotItem | None = None  # the commit for ``next``, planned ahead
        self.ahead: float | None = None  # the slot last committed ahead of its time

    def __repr__(self) -> str:
        return f"<JobState {self.spec.name} next={self.next} v{self.version}>"


class Plan(msgspec.Struct):
    """A ``SlotItem`` to commit and the job state version it was planned from."""

    item: SlotItem
    version: int  # -1: bookkeeping only, it moves no timer
    fire: bool = False  # a fire: retried if the whole commit fails


class Settled(msgspec.Struct, kw_only=True):
    """What one commit's results mean, for the actor to act on."""

    entries: list[Entry] = msgspec.field(default_factory=list)  # to the dispatcher
    records: list[SlotRecord] = msgspec.field(default_factory=list)  # slots that do not run
    follow: list[Plan] = msgspec.field(default_factory=list)  # commits to make next
    stale: list[int] = msgspec.field(default_factory=list)  # jobs to reload
    finished: list[int] = msgspec.field(default_factory=list)  # jobs ended (disabled/deleted)
    withdrew: list[int] = msgspec.field(default_factory=list)  # jobs the backoff withdrew from
    failed: list[tuple[str, str]] = msgspec.field(default_factory=list)  # (job, error)
    held: int = 0  # dispatches held by an approval gate (or cancelled by its backlog)
    duplicates: int = 0  # slots that already had their dispatch


class Timetable:
    """``lead``: how long before its slot a job's dispatch is committed (its
    ``not_before`` is the slot, so it still starts at the slot); the heap is keyed by
    that commit time, and a job's next slot is not committed before the one committed
    ahead of it is due (one slot ahead at a time, however short the period). Jobs
    behind an approval gate commit at the slot (lead 0): their approval is requested
    when the dispatch is committed."""

    def __init__(self, lead: float = 0.0) -> None:
        self._lead = lead
        self._jobs: dict[int, JobState] = {}
        self._heap: list[tuple[float, int, int]] = []  # (commit time, version, job id)
        self._versions = itertools.count(1)
        self._unready: deque[tuple[int, int]] = deque()  # (job id, version) to plan ahead

    def __len__(self) -> int:
        return len(self._jobs)

    def __repr__(self) -> str:
        return f"<Timetable jobs={len(self._jobs)} heap={len(self._heap)}>"

    def get(self, job_id: int) -> JobState | None:
        return self._jobs.get(job_id)

    def fired(self) -> list[int]:
        """The one-shot jobs that fired and wait for their dispatch's end."""
        return [j for j, st in self._jobs.items() if st.next is None and st.spec.at is not None]

    # -- timers ------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """The earliest live commit time (dead heap heads are dropped on the way)."""
        while self._heap and not self._live(self._heap[0][1], self._heap[0][2]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def peek(self) -> float | None:
        """The earliest next slot, without touching the heap (introspection)."""
        live = [self._jobs[e[2]].next for e in self._heap[:64] if self._live(e[1], e[2])]
        return min((t for t in live if t is not None), default=None)

    @property
    def unready(self) -> bool:
        """Whether some job's next commit is still to be planned ahead."""
        return bool(self._unready)

    def prepare(self, budget: int) -> None:
        """Plan up to ``budget`` jobs' next commits as if they fire on time."""
        while self._unready and budget > 0:
            job_id, version = self._unready.popleft()
            st = self._jobs.get(job_id)
            if st is not None and st.version == version and st.next is not None:
                args = (job_id, st.spec, st.next, st.stored, st.next)  # as if on time
                st.ready = fire_item(*args, anchor=st.anchor)
                budget -= 1

    def due(self, now: float) -> Iterator[Plan]:
        """The commit of each job whose commit time has come, earliest first. A slot
        committed ahead is planned as of the slot (on time); a late one as of ``now``."""
        while self._heap and self._heap[0][0] <= now:
            _, version, job_id = heapq.heappop(self._heap)
            st = self._jobs.get(job_id)
            if st is None or st.version != version or st.next is None:
                continue
            args = (job_id, st.spec, st.next, st.stored, max(now, st.next))
            item = fire_item(*args, anchor=st.anchor, ready=st.ready)
            yield Plan(item, st.version, fire=True)

    def retry(self, chunk: Sequence[Plan], at: float) -> None:
        """A commit failed as a whole: fire its still-current fires again at ``at``."""
        for p in chunk:
            if p.fire and self._live(p.version, p.item.job_id):
                heapq.heappush(self._heap, (at, p.version, p.item.job_id))

    # -- loading -----------------------------------------------------------------------

    def load(
        self, rows: Mapping[int, JobRow], ids: set[int] | None, now: float
    ) -> tuple[list[Plan], list[int]]:
        """Take the stored state of jobs ``ids`` (None: every job, ``rows`` being all of
        them). Returns the repairs to commit (a recurring job without a next run gets
        one) and the one-shot jobs that already fired (did their run end unseen?)."""
        if ids is None:
            ids = set(self._jobs) | set(rows)
        repairs: list[Plan] = []
        ended: list[int] = []
        for job_id in ids:
            row = rows.get(job_id)
            if row is None or not row.spec.enabled or not scheduled(row.spec):
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
            st = self._jobs[job_id] = JobState(row)
            repair = st.next is None and st.spec.at is None
            if repair:
                st.next = next_fire(st.spec, now, anchor=st.anchor)
            elif st.next is None:
                ended.append(job_id)
            self._push(job_id, st, st.next)
            if repair:
                item = SlotItem(job_id=job_id, job_name=st.spec.name, next_run_at=st.next)
                repairs.append(Plan(item, st.version))
        return repairs, ended

    def finish(self, job_id: int, msg: Outcome | None = None) -> Plan:
        """End a job after its last run (disable it, or delete it)."""
        st = self._jobs[job_id]
        outcome, at = (msg.outcome, msg.at) if msg else (None, None)
        return Plan(finish_item(job_id, st.spec, st.errors, outcome, at), -1)

    # -- outcomes and commit results ----------------------------------------------------

    def outcome(self, msg: Outcome, now: float) -> Plan | None:
        """The bookkeeping once a schedule dispatch ended for good: the error ladder on
        the next slot, or the end of a one-shot job."""
        # a spawn dispatch is its one-shot job's fired slot (store/ops/spawn.py)
        if not msg.final or msg.kind not in ("schedule", "spawn") or msg.outcome == "skipped":
            return None
        st = self._jobs.get(msg.job_id)
        if st is None:  # disabled or removed since: keep its record, nothing to schedule
            return Plan(status_item(msg.job_id, msg.job, msg.outcome, msg.at), -1)
        st.errors = count_errors(st.errors, msg.outcome)
        if ends_after(st.spec, msg.outcome):
            return self.finish(msg.job_id, msg)
        # a slot committed ahead and not due yet is the next one the backoff pushes back
        ahead = st.ahead if st.ahead is not None and st.ahead > now else None
        upcoming = st.next if ahead is None else ahead
        state = (msg.outcome, msg.at, st.errors, upcoming, st.stored, now)
        item = result_item(msg.job_id, st.spec, *state, anchor=st.anchor)
        if ahead is not None and any(s.slot == ahead for s in item.skipped):
            item = msgspec.structs.replace(item, withdraw=True)  # passed over: withdrawn
            st.ahead = None
        return Plan(item, st.version)

    def settle(self, chunk: Sequence[Plan], results: Sequence[Any], now: float) -> Settled:
        """Apply one commit's per-item results (see the module docstring)."""
        out = Settled()
        for p, result in zip(chunk, results, strict=True):
            item, job_id = p.item, p.item.job_id
            st = self._jobs.get(job_id)
            current = st is not None and st.version == p.version
            if result is None:  # the job changed, was disabled or removed meanwhile
                out.stale.append(job_id)
                continue
            if isinstance(result, SlotFailed):
                out.failed.append((item.job_name, result.error))
                if st is not None and current and p.fire:  # move on to its next slot
                    st.next = item.next_run_at
                    self._push(job_id, st, st.next)
                continue
            for new, got in zip(item.dispatches, result, strict=True):
                if got is not None and got[1] == 0:  # held by its approval gate
                    out.held += 1
                    continue
                if got is not None:
                    out.entries.append(entry_from_new(new, *got))
                    if st is not None and new.slot is not None and new.slot > now:
                        st.ahead = new.slot
                    continue
                out.duplicates += 1  # this slot already has its dispatch
                if st is not None and st.spec.at is not None:  # a one-shot that ran
                    out.follow.append(self.finish(job_id))
            for s in item.skipped:
                out.records.append(
                    SlotRecord(job=item.job_name, reason=s.reason, slot=s.slot, at=now)
                )
            if item.withdraw:  # its slot committed ahead was withdrawn in this commit
                out.withdrew.append(job_id)
            if item.finish:
                self._jobs.pop(job_id, None)
                out.finished.append(job_id)
            elif st is not None and current and item.set_next:
                st.stored = st.next = item.next_run_at
                self._push(job_id, st, st.next)
        return out

    # -- helpers -----------------------------------------------------------------------

    def _live(self, version: int, job_id: int) -> bool:
        st = self._jobs.get(job_id)
        return st is not None and st.version == version

    def _lead_of(self, spec: JobSpec) -> float:
        gate = spec.approval
        gated = gate is not None and (gate.sources is None or "schedule" in gate.sources)
        return 0.0 if gated else self._lead

    def _push(self, job_id: int, st: JobState, when: float | None) -> None:
        """A new version of the job's timer; its older heap entries are dead."""
        st.version, st.ready = next(self._versions), None
        if when is not None:
            at = when - self._lead_of(st.spec)
            if st.ahead is not None and st.ahead > at:  # one slot ahead at a time
                at = st.ahead
            heapq.heappush(self._heap, (at, st.version, job_id))
            self._unready.append((job_id, st.version))
        if len(self._heap) > 2 * len(self._jobs) + 1024:  # drop dead entries
            self._heap = [e for e in self._heap if self._live(e[1], e[2])]
            heapq.heapify(self._heap)
