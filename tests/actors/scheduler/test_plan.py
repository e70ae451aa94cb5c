"""Scheduling decisions (``scheduler.plan``): misfire policies, the error ladder, slot keys,
and the store effects of a slot."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from shepherd.actors.scheduler.cron import next_fire
from shepherd.actors.scheduler.plan import (
    MAX_SLOTS,
    MISFIRE_GRACE,
    SlotPlan,
    backed_off,
    error_backoff,
    fire_item,
    next_run_after_result,
    plan_slots,
    slot_key,
)
from shepherd.store.models import JobSpec, Seconds
from tests.actors.scheduler.specs import job, ts

AHEAD_T0 = datetime(2024, 6, 10, 12, 0, 30, tzinfo=UTC).timestamp()


# -- misfire -----------------------------------------------------------------------------

HOURLY = {"every": 3600}


def test_plan_on_time_slot_runs() -> None:
    for misfire in ("skip", "run_once", "run_all"):
        plan = plan_slots(job(every=60, misfire=misfire), 600.0, 610.0, anchor=0.0)
        assert plan == SlotPlan(run=[600.0], missed=[], next_run_at=660.0)


def test_plan_not_due_is_empty() -> None:
    assert plan_slots(job(every=60), 700.0, 650.0) == SlotPlan(run=[], missed=[], next_run_at=700.0)


def test_skip_runs_only_an_on_time_latest_slot() -> None:
    spec = job(misfire="skip", **HOURLY)
    # down for ~2h: 3600 and 7200 missed; 10800 is 30 s late, within grace
    plan = plan_slots(spec, 3600.0, 10830.0)
    assert plan == SlotPlan(run=[10800.0], missed=[3600.0, 7200.0], next_run_at=14400.0)
    # 120 s late: nothing runs, every slot is recorded missed
    plan = plan_slots(spec, 3600.0, 10920.0)
    assert plan == SlotPlan(run=[], missed=[3600.0, 7200.0, 10800.0], next_run_at=14400.0)


def test_skip_grace_edge() -> None:
    spec = job(misfire="skip", **HOURLY)
    assert plan_slots(spec, 3600.0, 3600.0 + MISFIRE_GRACE).run == [3600.0]
    assert plan_slots(spec, 3600.0, 3600.0 + MISFIRE_GRACE + 0.5).missed == [3600.0]


def test_run_once_coalesces_into_the_latest_slot() -> None:
    plan = plan_slots(job(misfire="run_once", **HOURLY), 3600.0, 10920.0)
    assert plan == SlotPlan(run=[10800.0], missed=[3600.0, 7200.0], next_run_at=14400.0)


def test_run_all_catches_up_within_the_window() -> None:
    spec = job(misfire="run_all", catch_up_window=7200, **HOURLY)
    plan = plan_slots(spec, 3600.0, 10920.0)  # 3600 is 7320 s old: outside
    assert plan == SlotPlan(run=[7200.0, 10800.0], missed=[3600.0], next_run_at=14400.0)
    plan = plan_slots(spec, 3600.0, 10800.0)  # 3600 is exactly 7200 s old: inside
    assert plan.run == [3600.0, 7200.0, 10800.0]
    assert plan.missed == []
    plan = plan_slots(spec, 3600.0, 10800.5)
    assert plan.run == [7200.0, 10800.0]
    assert plan.missed == [3600.0]


def test_run_all_window_below_grace_acts_as_grace() -> None:
    spec = job(misfire="run_all", catch_up_window=0, **HOURLY)
    assert plan_slots(spec, 3600.0, 3610.0).run == [3600.0]


def test_at_job_runs_however_late() -> None:
    spec = job(at="2024-06-01T12:00:00Z", misfire="skip")
    at = ts("2024-06-01T12:00:00+00:00")
    assert plan_slots(spec, at, at + 86400) == SlotPlan(run=[at], missed=[], next_run_at=None)


def test_cron_plan_across_fall_back_has_distinct_slots() -> None:
    spec = job(cron="30 * * * *", tz="America/New_York", misfire="run_all", catch_up_window=9000)
    plan = plan_slots(spec, ts("2024-11-03T04:30:00Z"), ts("2024-11-03T06:45:00Z"))
    assert plan.run == [ts(f"2024-11-03T0{h}:30:00Z") for h in (4, 5, 6)]
    assert plan.next_run_at == ts("2024-11-03T07:30:00Z")


@pytest.mark.parametrize("misfire", ["skip", "run_once"])
def test_truncated_plan_still_finds_the_latest_slot(misfire: str) -> None:
    plan = plan_slots(job(every=1, misfire=misfire), 1.0, 5000.0, anchor=0.0)
    assert plan.truncated
    assert plan.run == [5000.0]
    assert plan.missed == [float(i) for i in range(1, MAX_SLOTS + 1)]
    assert plan.next_run_at == 5001.0


def test_truncated_run_all_runs_the_newest_slots_in_the_window() -> None:
    spec = job(every=1, misfire="run_all", catch_up_window=3600)
    plan = plan_slots(spec, 1.0, 5000.0, anchor=0.0)
    assert plan.truncated
    assert plan.run == [float(i) for i in range(5001 - MAX_SLOTS, 5001)]
    assert plan.missed == [float(i) for i in range(1, MAX_SLOTS + 1)]


def test_truncated_cron_plan() -> None:
    start = ts("2024-06-01T00:00:00Z")
    now = start + 2 * 86400 + 30  # 2881 minute slots due
    plan = plan_slots(job(cron="* * * * *", misfire="run_once"), start, now)
    assert plan.truncated
    assert plan.run == [start + 2 * 86400]
    assert len(plan.missed) == MAX_SLOTS
    assert plan.missed[-1] == start + (MAX_SLOTS - 1) * 60
    assert plan.next_run_at == start + 2 * 86400 + 60


def test_truncated_plan_looks_back_for_an_old_latest_slot() -> None:
    # every minute on the 1st only: 1440 slots on June 1, none since; now is June 20
    start = ts("2024-06-01T00:00:00Z")
    spec = job(cron="* * 1 * *", misfire="run_once")
    plan = plan_slots(spec, start, ts("2024-06-20T12:00:00Z"))
    assert plan.truncated
    assert plan.run == [ts("2024-06-01T23:59:00Z")]
    assert plan.next_run_at == ts("2024-07-01T00:00:00Z")
    skip = plan_slots(job(cron="* * 1 * *"), start, ts("2024-06-20T12:00:00Z"))
    assert skip.run == []
    assert skip.missed[-1] == ts("2024-06-01T23:59:00Z")


# -- error backoff -----------------------------------------------------------------------


def test_error_backoff_ladder() -> None:
    assert [error_backoff(n) for n in range(-1, 8)] == [
        0.0,
        0.0,
        30.0,
        60.0,
        300.0,
        900.0,
        3600.0,
        3600.0,
        3600.0,
    ]


def test_next_run_after_result() -> None:
    hourly = job(cron="0 * * * *")
    now = ts("2024-06-12T10:00:10+00:00")
    nxt = ts("2024-06-12T11:00:00+00:00")
    assert next_run_after_result(hourly, now, 0) == nxt
    assert next_run_after_result(hourly, now, 3) == nxt  # 5 min backoff < next slot
    assert next_run_after_result(hourly, now, 5) == now + 3600  # 1 h backoff wins
    every = job(every=60)
    assert next_run_after_result(every, 1000.0, 0, anchor=0.0) == 1020.0
    assert next_run_after_result(every, 1000.0, 1, anchor=0.0) == 1030.0
    assert next_run_after_result(every, 1000.0, 3, anchor=0.0) == 1300.0
    assert next_run_after_result(job(at="in 10m"), now, 0) is None


# -- slot keys ---------------------------------------------------------------------------


def test_slot_key_is_stable_and_distinct() -> None:
    key = slot_key(7, 1718000000.0)
    assert key == hashlib.sha256(b"7:1718000000.000").hexdigest()[:32]
    assert len(key) == 32
    assert slot_key(7, 1718000000.0004) == key
    assert slot_key(8, 1718000000.0) != key
    assert slot_key(7, 1718000060.0) != key


# -- the error ladder on a planned slot, and a commit planned ahead ---------------------


def test_backed_off_follows_the_ocs_ladder() -> None:
    spec = JobSpec(name="j", every=Seconds(10.0))
    assert [error_backoff(n) for n in range(7)] == [0, 30, 60, 300, 900, 3600, 3600]
    assert backed_off(spec, 110.0, 100.0, 0, anchor=0.0) == (110.0, [])
    assert backed_off(spec, 110.0, 100.0, 1, anchor=0.0) == (130.0, [110.0, 120.0])
    assert backed_off(spec, 200.0, 100.0, 1, anchor=0.0) == (200.0, [])  # already later
    assert backed_off(spec, None, 100.0, 3) == (None, [])


@pytest.mark.parametrize(
    "spec",
    [
        JobSpec(name="c", cron="* * * * *"),
        JobSpec(name="b", cron="30 2 * * *", tz="America/New_York", misfire="run_all"),
        JobSpec(name="e", every=Seconds(7.0), misfire="run_once"),
        JobSpec(name="a", at="2024-06-10T12:01:00Z"),
    ],
)
def test_prepared_commit_equals_the_full_plan_when_it_is_used(spec: JobSpec) -> None:
    due = next_fire(spec, AHEAD_T0 - 86400 * 2) if spec.at is None else AHEAD_T0 + 30
    assert due is not None
    ready = fire_item(7, spec, due, due, due, anchor=AHEAD_T0 - 86400 * 3)
    for late in (0.0, 0.5, 30.0, 59.9, 60.0, 61.0, 3600.0, 86400.0 * 2):
        now = due + late
        full = fire_item(7, spec, due, due, now, anchor=AHEAD_T0 - 86400 * 3)
        fast = fire_item(7, spec, due, due, now, anchor=AHEAD_T0 - 86400 * 3, ready=ready)
        if fast is ready:  # used: it must be what the full plan says
            assert (full.dispatches, full.skipped, full.next_run_at) == (
                ready.dispatches,
                ready.skipped,
                ready.next_run_at,
            ), late
        else:
            assert fast == full
