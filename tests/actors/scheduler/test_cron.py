"""Fire-time maths (``scheduler.cron``): validation, cron in zones across DST, every, at."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.actors.scheduler.cron import next_fire, next_fires, resolve_at, validate_schedule
from shepherd.actors.scheduler.plan import (
    next_run_after_result,
)
from shepherd.store.errors import ConfigError
from tests.actors.scheduler.specs import NOW, job, ts

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
