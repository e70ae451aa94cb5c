"""The dashboard's pure formatting: durations, schedules in words, instants, charts."""

from __future__ import annotations

import pytest

from shepherd.runtime.http.ui.fmt import bars_svg, duration, instant, pretty, schedule_words, zoned
from shepherd.store.models import JobSpec


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.25, "250ms"), (5, "5s"), (2.5, "2.5s"), (90, "1m30s"), (3600, "1h"),
     (90061, "1d1h1m1s"), (-3, "0ms")],
)  # fmt: skip
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ({"cron": "*/5 * * * *"}, "every 5 minutes (UTC)"),
        ({"cron": "0 9 * * 1-5", "tz": "Europe/Paris"}, "at 09:00 on Mon-Fri (Europe/Paris)"),
        ({"cron": "30 2 * * *"}, "every day at 02:30 (UTC)"),
        ({"cron": "15 * * * *"}, "every hour at minute 15 (UTC)"),
        ({"cron": "0 4 1 * *"}, "at 04:00 on day 1 of every month (UTC)"),
        ({"cron": "0 0 1 1 *"}, "cron 0 0 1 1 * (UTC)"),
        ({"every": 90.0}, "every 1m30s"),
        ({}, "on demand"),
    ],
)
def test_schedule_words(spec: dict[str, object], text: str) -> None:
    assert schedule_words(JobSpec(name="j", target="t", **spec)) == text  # type: ignore[arg-type]


def test_instant_and_zone() -> None:
    html = str(instant(0.0))
    assert html == (
        '<time datetime="1970-01-01T00:00:00Z" title="1970-01-01 00:00:00 UTC">'
        "1970-01-01 00:00:00 UTC</time>"
    )
    assert zoned(0.0, "Europe/Paris") == "1970-01-01 01:00 CET"
    assert zoned(0.0, "No/Such_Zone") == "1970-01-01 00:00 UTC"


def test_chart_and_json_are_text() -> None:
    svg = str(bars_svg([{"ok": 2, "failed": 1}, {}], keys=("ok", "failed"), title="<t>"))
    assert svg.startswith("<svg") and "&lt;t&gt;" in svg and "<t>" not in svg
    assert svg.count("<rect") == 2
    assert pretty({"a": "<b>"}) == '{\n  "a": "<b>"\n}'


def test_session_cookie_expires_and_is_bound_to_its_key() -> None:
    import time

    from shepherd.runtime.http.auth import Auth, Principal
    from shepherd.runtime.http.config import HttpConfig, TokenConfig
    from shepherd.runtime.http.ui.session import Session, SessionKeeper

    auth = Auth.from_config(
        HttpConfig(tokens=[TokenConfig(name="v", scope="read", token="t")]), env={}
    )
    keeper = SessionKeeper(auth, ttl=60.0)
    s = keeper.login("t")
    assert s.principal == Principal("v", "read") and not s.can_write
    assert keeper.decode(keeper.encode(s)) == Session(
        s.principal, float(f"{s.expires:.0f}"), s.csrf
    )
    past = Session(s.principal, time.time() - 1, s.csrf)
    assert keeper.decode(keeper.encode(past)) is None  # expired
    other = SessionKeeper(auth, ttl=60.0)  # another process: another key
    assert other.decode(keeper.encode(s)) is None
    assert keeper.decode("garbage") is None and keeper.decode("a.b") is None
