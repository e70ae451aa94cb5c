"""Admission: may this ready dispatch start now? Pure functions, no I/O, no clock.

The dispatcher pops ready dispatches in order (priority rank, not-before, seq) and asks
``check`` about each. The verdicts:

- ``run``: start it (the caller also checks the global concurrency cap first);
- ``dead``: it expired before it could start (dead letter, reason ``expired``);
- ``skip``: it will not run; a skipped run is recorded with the reason
  (``skipped-overlap``, ``queue-full``, ``disabled``);
- ``cancel``: its job no longer exists;
- ``park``: it waits on a key (``job:<id>`` for overlap ``queue`` / ``replace``,
  ``pool:<name>`` for a busy resource pool) and is put back in the ready queue the
  moment a run holding that key ends — no polling;
- ``replace``: cancel the job's running runs, then park this one on the job key.
- ``defer``: not before the given time; no attempt is spent. (The dispatcher applies
  its executors' circuit breakers, ``actors.breaker``, after ``check`` says ``run``.)

Parked dispatches (``Parked``) wait FIFO per key. A key is handed on when its holder
ends (the dispatcher's release), and also when a dispatch leaves the queue without
running while nothing holds the key (``free_keys``): a waiter that is skipped, expired,
cancelled or whose job is gone passes its turn to the next one instead of ending the
chain. When a job's spec changes (disabled, removed, a new overlap policy), its
waiters go back through ``check`` at once (``Parked.take_changed``): the waiting fires
of a disabled job are skipped (``disabled``) then, not left queued.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Container, Mapping
from typing import Literal

import msgspec

from shepherd.actors.messages import Entry
from shepherd.store.models import JobSpec
from shepherd.store.ops import Settle

__all__ = ["AdmissionState", "Parked", "Verdict", "check", "free_keys", "ready_key", "settle"]

Action = Literal["run", "dead", "skip", "cancel", "park", "replace", "defer"]


class Verdict(msgspec.Struct, frozen=True):
    action: Action
    reason: str | None = None
    key: str | None = None
    until: float | None = None


RUN = Verdict("run")


class Parked:
    """Dispatches waiting on a key (``job:<id>``, ``pool:<name>``), FIFO per key; each
    waiter is kept as ``(dispatch id, job id)``."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: dict[str, deque[tuple[int, int]]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def count(self, key: str) -> int:
        q = self._queues.get(key)
        return len(q) if q else 0

    def park(self, key: str, dispatch_id: int, job_id: int) -> None:
        self._queues.setdefault(key, deque()).append((dispatch_id, job_id))

    def pop(self, key: str, alive: Container[int]) -> int | None:
        """The first waiter of ``key`` still in ``alive``; the ones before it that have
        left the queue meanwhile (cancelled) are dropped."""
        q = self._queues.get(key)
        while q:
            dispatch_id, _ = q.popleft()
            if dispatch_id in alive:
                return dispatch_id
        return None

    def take_changed(
        self, before: Mapping[int, JobSpec | None], after: Mapping[int, JobSpec]
    ) -> list[int]:
        """Take every waiter of a job in ``before`` whose spec is not the same in ``after``
        (changed or removed), in queue order per key: they must be checked again."""
        waiting = {job_id for q in self._queues.values() for _, job_id in q}
        changed = {j for j in waiting if j in before and after.get(j) != before[j]}
        out: list[int] = []
        for key in [k for k, q in self._queues.items() if any(w[1] in changed for w in q)]:
            q = self._queues[key]
            out += [d for d, job_id in q if job_id in changed]
            self._queues[key] = deque(w for w in q if w[1] not in changed)
        return out


class AdmissionState:
    """What admission looks at: runs per job and per pool, parked waiters, pool limits."""

    __slots__ = ("parked", "pool_limits", "running_by_job", "running_by_pool")

    def __init__(self, pool_limits: dict[str, int] | None = None) -> None:
        self.running_by_job: Counter[int] = Counter()
        self.running_by_pool: Counter[str] = Counter()
        self.parked = Parked()
        self.pool_limits: dict[str, int] = dict(pool_limits or {})

    def pool_limit(self, pool: str) -> int:
        return self.pool_limits.get(pool, 1)  # an undeclared pool is a mutex (OCS)


def ready_key(entry: Entry) -> tuple[int, float, int]:
    return (entry.priority, entry.not_before, entry.seq)


def check(entry: Entry, job: JobSpec | None, state: AdmissionState, now: float) -> Verdict:
    if job is None:
        return Verdict("cancel", "job removed")
    if entry.expires_at is not None and now >= entry.expires_at:
        return Verdict("dead", "expired")
    if not job.enabled and entry.kind == "schedule":
        return Verdict("skip", "disabled")
    if state.running_by_job[entry.job_id] > 0:
        key = f"job:{entry.job_id}"
        if job.overlap == "skip":
            return Verdict("skip", "skipped-overlap")
        if job.overlap == "queue":
            if state.parked.count(key) >= job.max_queued:
                return Verdict("skip", "queue-full")
            return Verdict("park", "overlap-queued", key=key)
        if job.overlap == "replace":
            return Verdict("replace", "replaced", key=key)
    if job.pool and state.running_by_pool[job.pool] >= state.pool_limit(job.pool):
        return Verdict("park", "pool-busy", key=f"pool:{job.pool}")
    return RUN


def free_keys(job_id: int, job: JobSpec | None, state: AdmissionState) -> list[str]:
    """The wait keys of a dispatch of ``job_id`` that nothing holds now. A dispatch that
    leaves the queue without running hands these to their next waiter."""
    keys = [f"job:{job_id}"] if state.running_by_job[job_id] <= 0 else []
    pool = job.pool if job is not None else None
    if pool and state.running_by_pool[pool] < state.pool_limit(pool):
        keys.append(f"pool:{pool}")
    return keys


_SETTLE = {"dead": ("dead", "cancelled"), "skip": ("done", "skipped"), "cancel": ("cancelled",) * 2}


def settle(dispatch_id: int, v: Verdict) -> Settle:
    """How a ``dead`` / ``skip`` / ``cancel`` verdict ends its dispatch (status, outcome)."""
    status, outcome = _SETTLE[v.action]
    return Settle(
        dispatch_id=dispatch_id, status=status, outcome=outcome, reason=v.reason or v.action
    )
