"""Where an imported job's schedule continues: the slot OCS would fire next is the slot
shepherd fires next; no slot runs twice across the switch and none is lost silently
(SEMANTICS D4). Pure functions of ``(spec, the OCS row, now)``.

- cron, ``next_run_at`` in the future: that instant (on the cron grid in the job's zone,
  or later when OCS's error backoff pushed it); the grid slots it passes over are
  recorded ``backoff``;
- cron, ``next_run_at`` past (OCS was stopped): as the job's misfire policy (``skip``)
  decides, the latest due slot if it is at most 60 s late, else the next slot after
  now; every other due slot is recorded ``missed``;
- cron, ``next_run_at`` NULL: the next slot after now (OCS's own repair at start);
- cron with a run still ``running`` (OCS died during it): that slot is recorded
  ``missed`` and not run again (an at-least-once job gets one ``replay`` dispatch);
- at, not yet run: ``at``, even when past (a due at-job runs once, however late);
  at, already run: imported disabled;
- a child, or a disabled job: no next fire.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shepherd.actors.scheduler.cron import fires, next_fire
from shepherd.actors.scheduler.plan import plan_slots
from shepherd.runtime.ocs_import.mapping import iso, to_epoch
from shepherd.store.models import JobSpec
from shepherd.store.ops import SkippedSlot

__all__ = ["Continued", "continue_schedule"]


class Continued(msgspec.Struct, frozen=True, kw_only=True):
    next_run_at: float | None
    skipped: list[SkippedSlot] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    disable: bool = False  # an at-job that has run: imported disabled
    replay: bool = False  # an at-least-once slot that crashed in OCS: one replay dispatch


def continue_schedule(
    spec: JobSpec, row: dict[str, Any], now: float, *, running: bool = False
) -> Continued:
    """``spec`` as mapped from ``row``; ``running``: OCS has a ``running`` run of it."""
    if not spec.enabled or spec.parent is not None:
        return Continued(next_run_at=None)
    if spec.at is not None:
        at = to_epoch(row.get("schedule_at")) or now
        last = to_epoch(row.get("last_run_at"))
        if last is not None and last >= at:
            return Continued(
                next_run_at=None,
                disable=True,
                notes=[f"ran at {iso(last)}: imported disabled (OCS would not fire it again)"],
            )
        return Continued(next_run_at=at)
    if spec.cron is None:
        return Continued(next_run_at=None)
    ocs_next = to_epoch(row.get("next_run_at"))
    if ocs_next is None:
        return Continued(
            next_run_at=next_fire(spec, now),
            notes=["next_run_at was NULL: the next slot after now"],
        )
    if ocs_next > now:
        return _future(spec, ocs_next, now)
    return _overdue(spec, ocs_next, now, running)


def _future(spec: JobSpec, ocs_next: float, now: float) -> Continued:
    passed: list[SkippedSlot] = []
    notes: list[str] = []
    for slot in fires(spec, now, None):
        if slot >= ocs_next or len(passed) >= 1000:
            if slot != ocs_next and not passed:
                notes.append(
                    f"OCS's next fire {iso(ocs_next)} is off this cron's grid"
                    " in its zone: shepherd fires then, then on the grid"
                )
            break
        passed.append(
            SkippedSlot(
                slot=slot,
                reason="backoff",
                error=f"slot {iso(slot)} passed over by openclaw-scheduler's error backoff",
            )
        )
    return Continued(next_run_at=ocs_next, skipped=passed, notes=notes)


def _overdue(spec: JobSpec, ocs_next: float, now: float, running: bool) -> Continued:
    notes: list[str] = []
    skipped: list[SkippedSlot] = []
    start = ocs_next
    replay = False
    if running:
        skipped.append(
            SkippedSlot(
                slot=ocs_next,
                reason="missed",
                error=f"slot {iso(ocs_next)} crashed in openclaw-scheduler"
                " (its run was still running)",
            )
        )
        replay = spec.delivery_guarantee == "at-least-once"
        notes.append(
            "its run was still running in OCS: that slot is not run again"
            + ("; one replay dispatch (at-least-once)" if replay else "")
        )
        after = next_fire(spec, ocs_next)
        if after is None:
            return Continued(next_run_at=None, skipped=skipped, notes=notes, replay=replay)
        if after > now:
            return Continued(next_run_at=after, skipped=skipped, notes=notes, replay=replay)
        start = after
    plan = plan_slots(spec, start, now)
    why = f"(misfire {spec.misfire})"
    skipped += [
        SkippedSlot(
            slot=s,
            reason="missed",
            error=f"slot {iso(s)} missed while openclaw-scheduler was stopped {why}",
        )
        for s in plan.missed
    ]
    if plan.truncated:
        skipped.append(
            SkippedSlot(
                slot=None, reason="missed", error=f"more slots before {iso(now)} missed {why}"
            )
        )
    if plan.missed:
        notes.append(f"{len(plan.missed)} slot(s) missed while OCS was stopped, recorded")
    nxt = plan.run[-1] if plan.run else plan.next_run_at
    return Continued(next_run_at=nxt, skipped=skipped, notes=notes, replay=replay)
