"""Scheduling decisions: which due slots run, how errors push a job back, and the
scheduler's store effects (``store.ops.SlotItem``). Pure functions of ``(spec, now)``
built on the fire times of ``scheduler.cron``; the actor performs what they return.
The module is longer than 300 lines because each decision sits next to the store
effect it becomes: what a due slot, a result or a job's end writes is read in one place.

Missed slots (``plan_slots``, called when ``next_run_at <= now``). The due slots are
``next_run_at`` and every later fire up to ``now``; each either runs now or is recorded
``missed`` (never dropped silently):

* ``skip`` - run the latest due slot if it is on time (``now - slot <= MISFIRE_GRACE``);
  every other due slot is missed. Late slots are not caught up; the job resumes at its
  next slot after now (OCS behaviour). Never a burst.
* ``run_once`` - one run for the latest due slot, however late; the others are missed
  (coalesced into it).
* ``run_all`` - run every due slot with ``now - slot <= max(catch_up_window,
  MISFIRE_GRACE)``, oldest first; older ones are missed.
* An ``at`` job's single slot always runs when due, however late (OCS: a due at-job runs
  once); misfire policies govern recurring schedules only.

At most ``MAX_SLOTS`` due slots are enumerated from ``next_run_at``. When more are due
(a long outage of a dense schedule) the plan is ``truncated``: those first slots are
listed as missed, the policy is applied to the most recent due slots (the latest one, or
for ``run_all`` at most ``MAX_SLOTS`` inside the window), and the slots in between are
missed without being listed - the actor writes one summary record for them.

After a run (OCS "next_run_at after a run"): the next fire after ``now``; after
``n > 0`` consecutive errors no earlier than ``now + error_backoff(n)`` (30 s, 1 min,
5 min, 15 min, 1 h). A backed-off fire is off the cron grid; it is then the slot.
``backed_off`` applies the ladder to a job's already planned next slot and lists the
slots it passes over (each recorded ``backoff``).
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime

import msgspec

from shepherd.actors.scheduler.cron import fires, next_fire
from shepherd.store.models import JobSpec, encode_json, priority_rank
from shepherd.store.ops import NewDispatch, SkippedSlot, SlotItem

__all__ = [
    "MAX_SLOTS",
    "MISFIRE_GRACE",
    "SlotPlan",
    "backed_off",
    "count_errors",
    "ends_after",
    "error_backoff",
    "finish_item",
    "fire_item",
    "next_run_after_result",
    "plan_slots",
    "result_item",
    "scheduled",
    "slot_key",
    "status_item",
]

MISFIRE_GRACE = 60.0  # seconds a slot may be late and still count as on time
MAX_SLOTS = 1000  # due slots enumerated per plan before it is truncated
_BACKOFF = (30.0, 60.0, 300.0, 900.0, 3600.0)  # OCS getBackoffMs, n = 1..>=5


class SlotPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What to do with the due slots of one job: dispatch ``run``, record ``missed``."""

    run: list[float]
    missed: list[float]
    next_run_at: float | None  # first slot strictly after now; None = never again
    truncated: bool = False  # more slots were missed than listed (see module docstring)


def plan_slots(
    spec: JobSpec, next_run_at: float, now: float, *, anchor: float | None = None
) -> SlotPlan:
    """Split the slots due in ``[next_run_at, now]`` into runs and misses by ``spec.misfire``."""
    if next_run_at > now:
        return SlotPlan(run=[], missed=[], next_run_at=next_run_at)
    if spec.cron is None and spec.every is None:  # at-job (or none): its one slot runs
        return SlotPlan(run=[next_run_at], missed=[], next_run_at=None)
    if spec.every is not None and anchor is None:
        anchor = next_run_at  # keep the grid the stored slot is on
    head = [next_run_at]
    ahead = fires(spec, next_run_at, anchor)
    after_head = next(ahead, None)
    while after_head is not None and after_head <= now and len(head) < MAX_SLOTS:
        head.append(after_head)
        after_head = next(ahead, None)
    truncated = after_head is not None and after_head <= now
    if truncated:
        window = _window(spec) if spec.misfire == "run_all" else None
        due = _recent(spec, head[-1], now, anchor, window)
        listed = head + due
        upcoming = next_fire(spec, now, anchor=anchor)
    else:
        due = listed = head
        upcoming = after_head
    run = _choose(spec, due, now)
    chosen = set(run)
    missed = [s for s in listed if s not in chosen]
    return SlotPlan(run=run, missed=missed, next_run_at=upcoming, truncated=truncated)


def error_backoff(consecutive_errors: int) -> float:
    """Delay before the next slot after ``consecutive_errors`` failed runs in a row."""
    if consecutive_errors <= 0:
        return 0.0
    return _BACKOFF[min(consecutive_errors, len(_BACKOFF)) - 1]


def next_run_after_result(
    spec: JobSpec, now: float, consecutive_errors: int, *, anchor: float | None = None
) -> float | None:
    """next_run_at once a run finished: next fire after now, pushed back after errors."""
    if spec.at is not None:
        return None
    upcoming = next_fire(spec, now, anchor=anchor)
    if upcoming is None or consecutive_errors <= 0:
        return upcoming
    return max(upcoming, now + error_backoff(consecutive_errors))


def backed_off(
    spec: JobSpec,
    upcoming: float | None,
    now: float,
    consecutive_errors: int,
    *,
    anchor: float | None = None,
) -> tuple[float | None, list[float]]:
    """Push the job's next slot ``upcoming`` back after ``consecutive_errors`` failures.

    Returns the new next_run_at, ``max(upcoming, now + error_backoff(n))`` (OCS), and
    the slots on the schedule that this passes over (``upcoming`` included), oldest
    first, at most ``MAX_SLOTS``: each is recorded ``backoff``, never dropped silently.
    """
    if upcoming is None or consecutive_errors <= 0:
        return upcoming, []
    earliest = now + error_backoff(consecutive_errors)
    if upcoming >= earliest:
        return upcoming, []
    passed = [upcoming]
    for slot in fires(spec, upcoming, anchor):
        if slot >= earliest or len(passed) >= MAX_SLOTS:
            break
        passed.append(slot)
    return earliest, passed


def slot_key(job_id: int, slot: float) -> str:
    """Stable idempotency key of one scheduled slot of one job."""
    import hashlib  # here: checking a job's schedule (every CLI command) needs no OpenSSL

    return hashlib.sha256(f"{job_id}:{slot:.3f}".encode()).hexdigest()[:32]


# -- decisions as the scheduler's store effects (``store.ops.SlotItem``) ---------------

_FAILED = ("error", "timeout", "crashed")


def scheduled(spec: JobSpec) -> bool:
    """Whether the job has a schedule (else it runs only when enqueued)."""
    return spec.cron is not None or spec.every is not None or spec.at is not None


def fire_item(
    job_id: int,
    spec: JobSpec,
    due: float,
    stored: float | None,
    now: float,
    *,
    anchor: float | None = None,
    ready: SlotItem | None = None,
) -> SlotItem:
    """The commit for a job whose slot ``due`` has come: a ``schedule`` dispatch per slot
    that runs (idempotency key ``slot_key``), a ``missed`` record per slot that does not,
    and the next fire time, compare-and-set against the stored one (``stored``).

    ``ready`` is this function's answer computed ahead with ``now = due`` (the actor
    prepares it while idle): it is returned as is when the slot is on time, that is
    when ``plan_slots`` would run just ``due`` and nothing else is due yet."""
    if ready is not None and _on_time(spec, due, ready.next_run_at, now):
        return ready
    plan = plan_slots(spec, due, now, anchor=anchor)
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
    return SlotItem(
        job_id=job_id,
        job_name=spec.name,
        expect_next=stored,
        next_run_at=plan.next_run_at,
        skipped=skipped,
        dispatches=[_new_dispatch(job_id, spec, s, now) for s in plan.run],
    )


def _on_time(spec: JobSpec, due: float, following: float | None, now: float) -> bool:
    if spec.cron is None and spec.every is None:
        return True  # a one-shot slot always runs
    return now - due <= MISFIRE_GRACE and (following is None or now < following)


def count_errors(consecutive_errors: int, outcome: str) -> int:
    """OCS: ``ok`` resets the count, ``error`` / ``timeout`` / ``crashed`` add one."""
    if outcome == "ok":
        return 0
    return consecutive_errors + (outcome in _FAILED)


def result_item(
    job_id: int,
    spec: JobSpec,
    outcome: str,
    at: float,
    errors: int,
    upcoming: float | None,
    stored: float | None,
    now: float,
    *,
    anchor: float | None = None,
) -> SlotItem:
    """Bookkeeping once a schedule dispatch ended; ``errors`` (already counted) pushes the
    next slot ``upcoming`` back (``backed_off``), each slot passed over recorded."""
    nxt, passed = backed_off(spec, upcoming, now, errors, anchor=anchor)
    why = f"error backoff after {errors} consecutive errors until {_iso(nxt)}"
    return SlotItem(
        job_id=job_id,
        job_name=spec.name,
        expect_next=stored,
        set_next=bool(passed),
        next_run_at=nxt,
        last_run_at=at,
        last_status=outcome,
        consecutive_errors=errors,
        skipped=[
            SkippedSlot(slot=s, reason="backoff", error=f"slot {_iso(s)}: {why}") for s in passed
        ],
    )


def status_item(job_id: int, job_name: str, outcome: str, at: float) -> SlotItem:
    """Only the last run's bookkeeping (a job no longer scheduled)."""
    return SlotItem(
        job_id=job_id, job_name=job_name, set_next=False, last_run_at=at, last_status=outcome
    )


def ends_after(spec: JobSpec, outcome: str) -> bool:
    """A one-shot job ends after its run; a recurring ``delete_after_run`` one after ok."""
    return spec.at is not None or (spec.delete_after_run and outcome == "ok")


def finish_item(
    job_id: int, spec: JobSpec, errors: int, outcome: str | None = None, at: float | None = None
) -> SlotItem:
    """End a job after its last run: deleted with ``delete_after_run``, else disabled."""
    off = None if spec.delete_after_run else msgspec.structs.replace(spec, enabled=False)
    return SlotItem(
        job_id=job_id,
        job_name=spec.name,
        set_next=False,
        last_run_at=at,
        last_status=outcome,
        consecutive_errors=errors,
        finish="disable" if off else "delete",
        spec=encode_json(off) if off else None,
    )


def _new_dispatch(job_id: int, spec: JobSpec, slot: float, now: float) -> NewDispatch:
    expires = now + float(spec.expires_in) if spec.expires_in is not None else None
    return NewDispatch(
        job_id=job_id,
        job_name=spec.name,
        kind="schedule",
        priority=priority_rank(spec.priority),
        not_before=slot,
        max_attempts=spec.retry.max_attempts,
        expires_at=expires,
        idempotency_key=slot_key(job_id, slot),
        slot=slot,
    )


def _iso(t: float | None) -> str:
    if t is None:
        return "never"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- helpers ---------------------------------------------------------------------------


def _window(spec: JobSpec) -> float:
    return max(float(spec.catch_up_window), MISFIRE_GRACE)


def _choose(spec: JobSpec, due: list[float], now: float) -> list[float]:
    if spec.misfire == "run_all":
        return [s for s in due if now - s <= _window(spec)]
    latest = due[-1:]
    if spec.misfire == "run_once":
        return latest
    return [s for s in latest if now - s <= MISFIRE_GRACE]


def _recent(
    spec: JobSpec, lo: float, now: float, anchor: float | None, window: float | None
) -> list[float]:
    """The latest slots in ``(lo, now]`` (within ``window`` of now if given), <= MAX_SLOTS."""
    floor = lo if window is None else max(lo, now - window - 1.0)
    if spec.every is not None and anchor is not None:  # jump straight to the grid near now
        k = math.floor((now - anchor) / float(spec.every)) - MAX_SLOTS
        floor = max(floor, anchor + k * float(spec.every))
    span = 3600.0
    while True:
        start = floor if window is not None else max(floor, now - span)
        found: deque[float] = deque(maxlen=MAX_SLOTS if window is not None else 1)
        for slot in fires(spec, start, anchor):
            if slot > now:
                break
            found.append(slot)
        if found or start <= floor:
            return [s for s in found if s > lo]
        span *= 2  # nothing in the last span: look further back for the latest slot
