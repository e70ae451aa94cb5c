"""The watchdog executor: a real check command, the OCS rules, alerts, self-destruct."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from shepherd.actors.executors.base import ExecResult
from shepherd.actors.executors.watchdog import WatchdogExecutor, parse_started_at
from shepherd.actors.primitives.clock import FakeClock
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec
from tests.actors.executors.conftest import FakeHost, make_ctx

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("spawning")]


def dog(cmd: str, **options: Any) -> JobSpec:
    options.setdefault("alert_to", "@ops")
    options.setdefault("label", "nightly build")
    return JobSpec(name="wd", executor="watchdog", target=cmd, options=options)


async def run(job: JobSpec, host: FakeHost | None = None) -> tuple[ExecResult, FakeHost]:
    host = host or FakeHost()
    res = await WatchdogExecutor().execute(make_ctx(job, host=host))
    return res, host


async def test_target_done_alerts_and_self_destructs() -> None:
    res, host = await run(dog("echo finished"))
    assert res.ok and not res.deliver
    [(text, kw)] = host.alerts
    assert text == '\u2705 [watchdog] Task "nightly build" completed -- watchdog disarmed'
    assert (kw["to"], kw["kind"], kw["job"]) == ("@ops", "alert", "wd")
    assert host.retired == ["wd"]
    assert res.details["watchdog"]["self_destructed"] is True


async def test_self_destruct_can_be_turned_off() -> None:
    res, host = await run(dog("echo finished", self_destruct=False))
    assert res.ok and len(host.alerts) == 1 and host.retired == []


async def test_exit_1_is_a_stuck_alert_with_the_output() -> None:
    res, host = await run(dog("echo 'still at 40%'; echo oops >&2; exit 1", timeout_min=30))
    assert res.ok
    [(text, _)] = host.alerts
    assert text.startswith('\U0001f6a8 [watchdog] Task "nightly build" appears stuck')
    assert "- Reason: check command reported stuck" in text
    assert "- Error: oops" in text and "- Output: still at 40%" in text
    assert host.retired == []


async def test_past_timeout_min_is_stuck_even_when_the_check_says_running() -> None:
    started = time.time() - 45 * 60
    res, host = await run(dog("true", timeout_min=30, started_at=started))
    [(text, _)] = host.alerts
    assert "running for 45min (threshold: 30min)" in text
    assert res.details["watchdog"]["elapsed_min"] == 45


async def test_silent_exit_0_is_still_running_and_exit_2_is_transient() -> None:
    res, host = await run(dog("true"))
    assert res.ok and host.alerts == []
    assert res.result == {"summary": "Watchdog check: target still running (0min elapsed)"}
    res, host = await run(dog("echo 'ssh timeout' >&2; exit 2"))
    assert res.ok and host.alerts == []
    assert res.result == {"summary": "Watchdog check failed (transient): ssh timeout"}


async def test_other_exit_codes_are_errors() -> None:
    res, host = await run(dog("exit 5"))
    assert not res.ok and host.alerts == []
    assert res.error == "Watchdog check command returned unexpected exit code 5"


async def test_no_alert_target_records_why() -> None:
    res, host = await run(dog("echo done", alert_to=None, self_destruct=False))
    assert host.alerts == []
    assert res.details["watchdog"]["alert"] == "no alert target (options.alert_to)"


async def test_check_is_killed_after_its_timeout() -> None:
    clock = FakeClock()
    ex = WatchdogExecutor(clock=clock)
    job = JobSpec(name="wd", executor="watchdog", target="sleep 30", timeout=300.0)
    got: list[ExecResult] = []

    async def go() -> None:
        got.append(await ex.execute(make_ctx(job, host=FakeHost())))

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        await clock.advance_when_blocked(59.0)  # the check has armed its limit first
        assert not got
        await clock.advance_when_blocked(1.0)  # min(timeout, 60 s)
    assert time.monotonic() - started < 10
    assert not got[0].ok
    assert got[0].error == "Watchdog check timed out after 60s"


def test_validation_names_fields() -> None:
    ex = WatchdogExecutor()
    for options, field in (
        ({"check_cmd": ""}, "options.check_cmd"),
        ({"timeout_min": 0}, "options.timeout_min"),
        ({"self_destruct": "yes"}, "options.self_destruct"),
        ({"alert_to": ""}, "options.alert_to"),
        ({"started_at": "yesterday"}, "options.started_at"),
    ):
        target = "" if "check_cmd" in options else "true"
        with pytest.raises(ConfigError) as info:
            ex.validate(JobSpec(name="wd", executor="watchdog", target=target, options=options))
        assert info.value.field == field
    ex.validate(dog("true", started_at="2024-06-01T10:00:00Z", timeout_min=5))
    assert parse_started_at("2024-06-01T10:00:00") == parse_started_at(1717236000)
