"""The scheduler's timetable on its own, no loop: load, fire, settle, retry, outcomes."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from shepherd.actors.messages import Outcome
from shepherd.actors.scheduler.plan import error_backoff
from shepherd.actors.scheduler.timetable import Plan, Timetable
from shepherd.store.models import JobRow, JobSpec, Seconds
from shepherd.store.models import Outcome as RunOutcome
from shepherd.store.ops import SlotFailed

T0 = datetime(2024, 6, 10, 12, 0, 0, tzinfo=UTC).timestamp()


def row(
    job_id: int, spec: JobSpec, next_run_at: float | None, anchor: float | None = None
) -> JobRow:
    return JobRow(id=job_id, spec=spec, next_run_at=next_run_at, anchor=anchor)


def every(name: str, period: float = 60.0) -> JobSpec:
    return JobSpec(name=name, every=Seconds(period))


def loaded(*rows: JobRow) -> Timetable:
    table = Timetable()
    repairs, ended = table.load({r.id: r for r in rows}, None, T0)
    assert repairs == [] and ended == []
    return table


def committed(plan: Plan, first_id: int = 1) -> list[tuple[int, int]]:
    """The result ``RecordSlots`` gives an item whose dispatches all were inserted."""
    return [(first_id + k, first_id + k) for k in range(len(plan.item.dispatches))]


def outcome(job_id: int, name: str, result: RunOutcome, at: float) -> Outcome:
    return Outcome(
        job_id=job_id,
        job=name,
        dispatch_id=1,
        outcome=result,
        final=True,
        slot=None,
        kind="schedule",
        at=at,
    )


def test_load_keeps_scheduled_enabled_jobs_and_repairs_or_reports() -> None:
    table = Timetable()
    off = msgspec.structs.replace(every("off"), enabled=False)
    rows = {
        1: row(1, every("a"), T0 + 60, anchor=T0),
        2: row(2, off, T0 + 60),
        3: row(3, JobSpec(name="manual"), None),  # no schedule
        4: row(4, every("lost"), None, anchor=T0),  # recurring without a next run
        5: row(5, JobSpec(name="once", at="2024-06-10T11:00:00Z"), None),  # fired
    }
    repairs, ended = table.load(rows, None, T0 + 30)
    assert len(table) == 3 and table.get(2) is None and table.get(3) is None
    assert [(p.item.job_id, p.item.next_run_at) for p in repairs] == [(4, T0 + 60)]
    assert ended == [5]
    assert table.next_due() == T0 + 60


def test_reloading_an_unchanged_job_keeps_its_timer_and_plan() -> None:
    r = row(1, every("a"), T0 + 60, anchor=T0)
    table = loaded(r)
    table.prepare(10)
    st = table.get(1)
    assert st is not None and st.ready is not None
    table.load({1: msgspec.structs.replace(r, consecutive_errors=2)}, {1}, T0)
    assert table.get(1) is st and st.ready is not None and st.errors == 2
    table.load({}, {1}, T0)  # gone from the store
    assert len(table) == 0 and table.next_due() is None


def test_due_fires_only_what_has_come_earliest_first() -> None:
    table = loaded(row(1, every("a"), T0 + 60, anchor=T0), row(2, every("b", 30), T0 + 30))
    assert list(table.due(T0 + 29)) == []
    plans = list(table.due(T0 + 60))
    assert [(p.item.job_id, p.fire) for p in plans] == [(2, True), (1, True)]
    got = [([d.slot for d in p.item.dispatches], [x.slot for x in p.item.skipped]) for p in plans]
    assert got == [([T0 + 60], [T0 + 30]), ([T0 + 60], [])]  # b's late slot is missed
    assert table.next_due() is None  # nothing is re-armed before the commit settles


def test_a_slot_planned_ahead_is_used_when_on_time() -> None:
    table = loaded(row(1, every("a"), T0 + 60, anchor=T0))
    assert table.unready
    table.prepare(10)
    assert not table.unready
    st = table.get(1)
    assert st is not None
    (plan,) = table.due(T0 + 60.5)
    assert plan.item is st.ready


def test_settle_arms_the_next_slot_and_yields_dispatcher_entries() -> None:
    table = loaded(row(1, every("a"), T0 + 60, anchor=T0))
    (plan,) = table.due(T0 + 60)
    s = table.settle([plan], [committed(plan, 7)], T0 + 60)
    assert [(e.id, e.job_id, e.slot, e.kind) for e in s.entries] == [(7, 1, T0 + 60, "schedule")]
    assert s.failed == [] and s.stale == [] and s.follow == []
    st = table.get(1)
    assert st is not None and st.next == st.stored == T0 + 120
    assert table.next_due() == T0 + 120


def test_settle_missed_slots_become_records() -> None:
    table = loaded(row(1, every("a"), T0 + 60, anchor=T0))
    (plan,) = table.due(T0 + 600)  # misfire skip: nine missed, the on-time one runs
    s = table.settle([plan], [committed(plan)], T0 + 600)
    assert [(r.job, r.reason) for r in s.records] == [("a", "missed")] * 9
    assert len(s.entries) == 1


def test_settle_stale_item_asks_for_a_reload_and_keeps_the_timer_dead() -> None:
    table = loaded(row(1, every("a"), T0 + 60, anchor=T0))
    (plan,) = table.due(T0 + 60)
    s = table.settle([plan], [None], T0 + 60)
    assert s.stale == [1] and s.entries == []
    assert table.next_due() is None


def test_settle_a_failed_item_moves_that_job_on_and_not_the_others() -> None:
    table = loaded(row(1, every("bad"), T0 + 60, anchor=T0), row(2, every("ok"), T0 + 60))
    plans = list(table.due(T0 + 60))
    bad = next(p for p in plans if p.item.job_id == 1)
    good = next(p for p in plans if p.item.job_id == 2)
    results = [SlotFailed("OverflowError: too big") if p is bad else committed(p) for p in plans]
    s = table.settle(plans, results, T0 + 60)
    assert s.failed == [("bad", "OverflowError: too big")]
    assert [e.job_id for e in s.entries] == [2]
    st = table.get(1)
    assert st is not None
    assert st.next == T0 + 120  # moved on to its next slot, not retried at once
    assert st.stored == T0 + 60  # the store still holds the old value (compare-and-set)
    assert table.next_due() == T0 + 120 and good.item.expect_next == T0 + 60
    later = {p.item.job_id: p.item.expect_next for p in table.due(T0 + 120)}
    assert later == {1: T0 + 60, 2: T0 + 120}  # both fire again at their next slot


def test_retry_after_a_failed_commit_fires_the_same_slot_again() -> None:
    table = loaded(row(1, every("a"), T0 + 60, anchor=T0))
    chunk = list(table.due(T0 + 60))
    table.retry(chunk, T0 + 61)
    assert table.next_due() == T0 + 61
    (plan,) = table.due(T0 + 61)
    assert [d.slot for d in plan.item.dispatches] == [T0 + 60]


def test_outcomes_apply_the_error_ladder_and_end_one_shot_jobs() -> None:
    table = loaded(
        row(1, every("a"), T0 + 60, anchor=T0),
        row(2, JobSpec(name="once", at="2024-06-10T12:05:00Z"), T0 + 300),
    )
    first = table.outcome(outcome(1, "a", "error", T0 + 10), T0 + 10)
    assert first is not None and first.item.consecutive_errors == 1
    assert first.item.set_next is False  # T0 + 10 + 30 s is before the next slot
    second = table.outcome(outcome(1, "a", "error", T0 + 10), T0 + 10)
    assert second is not None and second.item.consecutive_errors == 2
    assert second.item.next_run_at == T0 + 10 + error_backoff(2)  # past the slot at T0 + 60
    assert [(x.slot, x.reason) for x in second.item.skipped] == [(T0 + 60, "backoff")]
    done = table.outcome(outcome(2, "once", "ok", T0 + 301), T0 + 301)
    assert done is not None and done.item.finish == "disable" and done.version == -1
    s = table.settle([done], [[]], T0 + 301)
    assert s.finished == [2] and table.get(2) is None
    gone = table.outcome(outcome(9, "x", "ok", T0), T0)
    assert gone is not None and gone.item.set_next is False and gone.item.last_status == "ok"
    not_final = msgspec.structs.replace(outcome(1, "a", "error", T0), final=False)
    assert table.outcome(not_final, T0) is None


def test_a_duplicate_one_shot_slot_finishes_the_job() -> None:
    table = loaded(row(1, JobSpec(name="once", at="2024-06-10T12:05:00Z"), T0 + 300))
    (plan,) = table.due(T0 + 300)
    s = table.settle([plan], [[None]], T0 + 300)
    assert s.duplicates == 1 and [p.item.finish for p in s.follow] == ["disable"]


def test_dead_heap_entries_are_skipped_and_compacted() -> None:
    r = row(1, every("a"), T0 + 60, anchor=T0)
    table = loaded(r)
    for k in range(3000):  # the job's timer moves many times: old entries die
        table.load({1: msgspec.structs.replace(r, next_run_at=T0 + 60 + k)}, {1}, T0)
    assert table.next_due() == T0 + 60 + 2999
    assert len(table._heap) <= 2 * len(table) + 1025


def test_a_lead_commits_each_slot_ahead_as_of_the_slot() -> None:
    """With a lead, a job's commit comes ``lead`` before its slot and is planned as if
    on time (dispatch ``not_before`` the slot); a job gated for schedule dispatches
    commits at the slot. A run ending after its next slot was committed ahead has the
    backoff pass over that slot: the item withdraws it."""
    from shepherd.store.models import ApprovalPolicy

    table = Timetable(lead=2.0)
    gated = msgspec.structs.replace(every("gated"), approval=ApprovalPolicy())
    table.load({1: row(1, every("a"), T0 + 60, anchor=T0), 2: row(2, gated, T0 + 60)}, None, T0)
    assert table.next_due() == T0 + 58 and table.peek() == T0 + 60
    [plan] = list(table.due(T0 + 58))
    assert plan.item.job_id == 1
    assert [(d.slot, d.not_before) for d in plan.item.dispatches] == [(T0 + 60, T0 + 60)]
    assert plan.item.skipped == [] and plan.item.next_run_at == T0 + 120
    table.settle([plan], [committed(plan)], T0 + 58)
    assert table.next_due() == T0 + 60  # the gated job, at its slot
    late = table.outcome(outcome(1, "a", "error", T0 + 59), T0 + 59)
    assert late is not None and late.item.withdraw
    assert [s.slot for s in late.item.skipped] == [T0 + 60]  # the backoff ends before T0 + 120
    assert late.item.next_run_at == T0 + 59 + error_backoff(1)


def test_a_period_shorter_than_the_lead_commits_one_slot_ahead_at_a_time() -> None:
    table = Timetable(lead=2.0)
    table.load({1: row(1, every("fast", 1.0), T0 + 10, anchor=T0)}, None, T0)
    assert table.next_due() == T0 + 8
    [plan] = list(table.due(T0 + 8))
    table.settle([plan], [committed(plan)], T0 + 8)
    assert table.next_due() == T0 + 10  # slot T0 + 11 waits until T0 + 10 is due
    [plan] = list(table.due(T0 + 10))
    assert [d.slot for d in plan.item.dispatches] == [T0 + 11]
