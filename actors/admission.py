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
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import msgspec

from actors.messages import Entry
from store.models import JobSpec

__all__ = ["AdmissionState", "Verdict", "check", "ready_key"]

Action = Literal["run", "dead", "skip", "cancel", "park", "replace", "defer"]


class Verdict(msgspec.Struct, frozen=True):
    action: Action
    reason: str | None = None
    key: str | None = None
    until: float | None = None


RUN = Verdict("run")


class AdmissionState:
    """What admission looks at: runs per job and per pool, parked counts, pool limits."""

    __slots__ = ("parked", "pool_limits", "running_by_job", "running_by_pool")

    def __init__(self, pool_limits: dict[str, int] | None = None) -> None:
        self.running_by_job: Counter[int] = Counter()
        self.running_by_pool: Counter[str] = Counter()
        self.parked: Counter[str] = Counter()
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
            if state.parked[key] >= job.max_queued:
                return Verdict("skip", "queue-full")
            return Verdict("park", "overlap-queued", key=key)
        if job.overlap == "replace":
            return Verdict("replace", "replaced", key=key)
    if job.pool and state.running_by_pool[job.pool] >= state.pool_limit(job.pool):
        return Verdict("park", "pool-busy", key=f"pool:{job.pool}")
    return RUN
