"""The pure scheduling core: validation, cron in zones across DST, misfire, backoff."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import pytest

from shepherd.actors.schedule import next_fire, next_fires, resolve_at, validate_schedule
from shepherd.actors.schedule_plan import (
    MAX_SLOTS,
    MISFIRE_GRACE,
    SlotPlan,
    error_backoff,
    next_run_after_result,
    plan_slots,
    slot_key,
)
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec, Seconds

NOW = 1_718_000_000.0  # 2024-06-10T06:13:20Z


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def job(**kw: Any) -> JobSpec:
    if "every" in kw:
        kw["every"] = Seconds(kw["every"])
    if "catch_up_window" in kw:
        kw["catch_up_window"] = Seconds(kw["catch_up_window"])
    return JobSpec(name="j", **kw)


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field", "text"),
    [
        ({"cron": "61 * * * *"}, "cron", "Bad minute"),
        ({"cron": "0 0 30 2 *"}, "cron", "day-of-month"),
        ({"cron": "0 0 * * * *"}, "cron", "5 fields"),
        ({"cron": "* * *"}, "cron", "5 fields"),
        ({"cron": "@reboot"}, "cron", "alias"),
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "tz", "Mars/Olympus"),
        ({"tz": ""}, "tz", "time zone"),
        ({"at": "tomorrow"}, "at", "ISO 8601"),
        ({"at": "2024-02-30T00:00:00Z"}, "at", "ISO 8601"),
        ({"at": "in soon"}, "at", "duration"),
        ({"every": 0}, "every", "positive"),
        ({"every": -5}, "every", "positive"),
        ({"cron": "0 * * * *", "every": 60}, "schedule", "at most one"),
        ({"at": "in 1m", "every": 60}, "schedule", "at most one"),
        ({"every": 60, "catch_up_window": -1}, "catch_up_window", ">= 0"),
    ],
)
def test_validation_names_the_field(kw: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_schedule(job(**kw), NOW)
    assert err.value.field == field
    assert text in str(err.value)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"cron": "*/5 9-17 * * 1-5", "tz": "Europe/Berlin"},
        {"cron": "@Daily"},
        {"at": "2030-01-01T00:00:00Z"},
        {"at": "2030-01-01T09:00", "tz": "Asia/Tokyo"},
        {"at": "in 10m"},
        {"every": 0.5},
    ],
)
def test_valid_schedules_pass(kw: dict[str, Any]) -> None:
    validate_schedule(job(**kw), NOW)


@pytest.mark.parametrize(
    ("alias", "expr"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_aliases_fire_like_their_expression(alias: str, expr: str) -> None:
    after = ts("2024-06-12T13:14:15+00:00")
    assert next_fires(job(cron=alias), after, 3) == next_fires(job(cron=expr), after, 3)


def test_alias_values() -> None:
    after = ts("2024-06-12T13:14:15+00:00")  # a Wednesday
    assert next_fire(job(cron="@daily"), after) == ts("2024-06-13T00:00:00+00:00")
    assert next_fire(job(cron="@weekly"), after) == ts("2024-06-16T00:00:00+00:00")
    assert next_fire(job(cron="@hourly"), after) == ts("2024-06-12T14:00:00+00:00")
    assert next_fire(job(cron="@yearly"), after) == ts("2025-01-01T00:00:00+00:00")


# -- cron in a zone, DST -----------------------------------------------------------------


def test_cron_is_evaluated_in_tz() -> None:
    spec = job(cron="0 9 * * *", tz="Europe/Berlin")
    assert next_fire(spec, ts("2024-01-15T12:00:00+00:00")) == ts("2024-01-16T08:00:00+00:00")
    assert next_fire(spec, ts("2024-07-15T12:00:00+00:00")) == ts("2024-07-16T07:00:00+00:00")
    assert next_fire(job(cron="0 9 * * *"), ts("2024-07-15T12:00:00+00:00")) == ts(
        "2024-07-16T09:00:00+00:00"
    )


def test_next_fire_is_strictly_after() -> None:
    spec = job(cron="0 * * * *")
    t = ts("2024-06-12T14:00:00+00:00")
    assert next_fire(spec, t) == t + 3600
    assert next_fire(spec, t - 0.5) == t


# (tz, expr, after, expected UTC instants). 2024 transitions: New York springs forward
# 03-10 07:00Z (02:00 EST -> 03:00 EDT) and falls back 11-03 06:00Z (02:00 EDT -> 01:00
# EST); Berlin springs 03-31 01:00Z (02:00 CET -> 03:00 CEST) and falls back 10-27 01:00Z
# (03:00 CEST -> 02:00 CET).
DST_CASES = [
    # a daily slot in the spring gap fires once, at 03:00 local
    (
        "America/New_York",
        "30 2 * * *",
        "2024-03-09T12:00:00+00:00",
        ["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z", "2024-03-12T06:30:00Z"],
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2024-03-30T12:00:00+00:00",
        ["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"],
    ),
    # a daily slot in the fall-back overlap fires once, at its first occurrence
    (
        "America/New_York",
        "30 1 * * *",
        "2024-11-02T12:00:00+00:00",
        ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
    ),
    (
        "America/New_York",
        "30 2 * * *",
        "2024-11-02T12:00:00+00:00",
        ["2024-11-03T07:30:00Z", "2024-11-04T07:30:00Z"],
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2024-10-26T12:00:00+00:00",
        ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
    ),
    # an interval expression keeps its real hourly cadence: no 02:30 in spring ...
    (
        "America/New_York",
        "30 * * * *",
        "2024-03-10T05:00:00+00:00",
        ["2024-03-10T05:30:00Z", "2024-03-10T06:30:00Z", "2024-03-10T07:30:00Z"],
    ),
    (
        "Europe/Berlin",
        "30 * * * *",
        "2024-03-30T23:00:00+00:00",
        ["2024-03-30T23:30:00Z", "2024-03-31T00:30:00Z", "2024-03-31T01:30:00Z"],
    ),
    # ... and both real 01:30s (EDT, then EST) in autumn: distinct instants, one hour apart
    (
        "America/New_York",
        "30 * * * *",
        "2024-11-03T04:00:00+00:00",
        [
            "2024-11-03T04:30:00Z",
            "2024-11-03T05:30:00Z",
            "2024-11-03T06:30:00Z",
            "2024-11-03T07:30:00Z",
        ],
    ),
    (
        "Europe/Berlin",
        "30 * * * *",
        "2024-10-26T23:00:00+00:00",
        [
            "2024-10-26T23:30:00Z",
            "2024-10-27T00:30:00Z",
            "2024-10-27T01:30:00Z",
            "2024-10-27T02:30:00Z",
        ],
    ),
]


@pytest.mark.parametrize(("tz", "expr", "after", "expected"), DST_CASES)
def test_dst_transitions(tz: str, expr: str, after: str, expected: list[str]) -> None:
    got = next_fires(job(cron=expr, tz=tz), ts(after), len(expected))
    assert got == [ts(e) for e in expected]


@pytest.mark.parametrize(
    ("tz", "expr", "inside_second_pass", "expected"),
    [
        # 01:15 EST, after 01:30 EDT already fired: 01:30 EST must not fire
        ("America/New_York", "30 1 * * *", "2024-11-03T06:15:00Z", "2024-11-04T06:30:00Z"),
        ("America/New_York", "0,30 1 * * *", "2024-11-03T06:15:00Z", "2024-11-04T06:00:00Z"),
        # 02:15 CET, after 02:30 CEST already fired
        ("Europe/Berlin", "30 2 * * *", "2024-10-27T01:15:00Z", "2024-10-28T01:30:00Z"),
    ],
)
def test_overlap_slot_never_fires_twice(
    tz: str, expr: str, inside_second_pass: str, expected: str
) -> None:
    spec = job(cron=expr, tz=tz)
    after = ts(inside_second_pass)
    assert next_fire(spec, after) == ts(expected)
    assert next_run_after_result(spec, after, 0) == ts(expected)


# -- every and at ------------------------------------------------------------------------


def test_every_without_anchor_is_after_plus_period() -> None:
    assert next_fire(job(every=60), 1000.5) == 1060.5


def test_every_with_anchor_stays_on_the_grid() -> None:
    spec = job(every=60)
    assert next_fire(spec, 1000.0, anchor=1000.0) == 1060.0
    assert next_fire(spec, 1059.9, anchor=1000.0) == 1060.0
    assert next_fire(spec, 1060.0, anchor=1000.0) == 1120.0
    assert next_fire(spec, 500.0, anchor=1000.0) == 1000.0  # never before the anchor
    assert next_fires(spec, 1234.0, 3, anchor=1000.0) == [1240.0, 1300.0, 1360.0]


def test_at_forms() -> None:
    assert resolve_at(job(at="2024-06-01T12:00:00Z"), NOW) == ts("2024-06-01T12:00:00+00:00")
    assert resolve_at(job(at="2024-06-01T12:00:00+02:00"), NOW) == ts("2024-06-01T10:00:00+00:00")
    assert resolve_at(job(at="2024-07-01T09:00", tz="Europe/Berlin"), NOW) == ts(
        "2024-07-01T07:00:00+00:00"
    )
    assert resolve_at(job(at="in 10m"), NOW) == NOW + 600
    assert resolve_at(job(at="IN 1.5h"), NOW) == NOW + 5400


def test_naive_at_follows_the_dst_rules() -> None:
    ny = "America/New_York"
    assert resolve_at(job(at="2024-03-10T02:30", tz=ny), NOW) == ts("2024-03-10T07:00:00Z")
    assert resolve_at(job(at="2024-11-03T01:30", tz=ny), NOW) == ts("2024-11-03T05:30:00Z")


def test_at_fires_once_if_still_ahead() -> None:
    spec = job(at="2024-06-01T12:00:00Z")
    at = ts("2024-06-01T12:00:00+00:00")
    assert next_fire(spec, at - 1) == at
    assert next_fire(spec, at) is None
    assert next_fires(spec, at - 100, 5) == [at]
    assert next_fire(job(at="in 10m"), NOW, anchor=NOW - 300) == NOW + 300


def test_no_schedule_never_fires() -> None:
    assert next_fire(job(), NOW) is None
    assert next_fires(job(), NOW, 3) == []
    assert next_run_after_result(job(), NOW, 2) is None


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
