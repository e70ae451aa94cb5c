"""Announce delivery decisions, text, aliases and sinks: plain functions, no loop."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.actors.router.delivery import (
    DeliveryConfig,
    DeliveryTarget,
    announce_text,
    delivery_settings,
    pick_sink,
    resolve_target,
    retry_delay,
    should_announce,
    validate_delivery,
)
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec, Run

W = "\u26a0\ufe0f"


def job(executor: str = "python", **options: Any) -> JobSpec:
    return JobSpec(name="nightly", executor=executor, target="x", options=options)


def run(**kw: Any) -> Run:
    base: dict[str, Any] = {
        "id": 1,
        "dispatch_id": 1,
        "job_id": 1,
        "job_name": "nightly",
        "attempt": 1,
        "status": "ok",
        "started_at": 0.0,
    }
    base.update(kw)
    return Run(**base)


@pytest.mark.parametrize(
    ("executor", "mode", "ok_sent", "error_sent"),
    [
        ("shell", "announce", False, True),
        ("shell", "announce-always", True, True),
        ("agent", "announce", False, True),
        ("agent", "announce-always", True, True),
        ("python", "announce", False, True),
        ("event", "announce", False, False),
        ("event", "announce-always", True, True),
        ("watchdog", "announce-always", False, False),
        ("agent", "none", False, False),
    ],
)
def test_announce_vs_announce_always_per_executor(
    executor: str, mode: str, ok_sent: bool, error_sent: bool
) -> None:
    j = job(executor, delivery=mode, delivery_to="@ops")
    assert should_announce(j, "ok", True) is ok_sent
    assert should_announce(j, "error", True) is error_sent
    assert should_announce(j, "timeout", True) is error_sent
    assert should_announce(j, "cancelled", True) is False  # an operator's cancel is quiet
    assert should_announce(j, "error", False) is False  # a sentinel suppressed it


def test_default_mode_follows_the_target() -> None:
    assert delivery_settings({}) == ("none", None, None)
    assert delivery_settings({"delivery_to": "@ops"}) == ("announce", "@ops", None)
    assert not should_announce(job(), "error", True)


def test_validation_names_the_field() -> None:
    validate_delivery({})
    validate_delivery({"delivery": "none"})
    validate_delivery({"delivery": "announce-always", "delivery_to": "@ops"})
    for options, field in (
        ({"delivery": "announce"}, "options.delivery_to"),
        ({"delivery": "announce-always", "delivery_to": " "}, "options.delivery_to"),
        ({"delivery": "loud", "delivery_to": "@ops"}, "options.delivery"),
        ({"delivery_to": 5}, "options.delivery_to"),
    ):
        with pytest.raises(ConfigError) as info:
            validate_delivery(options)
        assert info.value.field == field


def test_aliases_resolve_to_channel_and_target() -> None:
    aliases = {"ops": DeliveryTarget(channel="telegram", target="-100123")}
    assert resolve_target("@ops", None, aliases) == ("telegram", "-100123")
    assert resolve_target("ops", None, aliases) == ("telegram", "-100123")
    assert resolve_target("@ops", "hook", aliases) == ("hook", "-100123")
    assert resolve_target("@unknown", None, aliases) == (None, "@unknown")
    assert resolve_target("12345", "slack", aliases) == ("slack", "12345")


def test_sink_choice() -> None:
    hooks = {"hook": "http://h/webhook"}
    assert pick_sink("tg", "gateway", {"tg"}, hooks) == ("callback", "tg")
    assert pick_sink("hook", "gateway", set(), hooks) == ("webhook", "hook")
    assert pick_sink("telegram", "gateway", set(), hooks) == ("gateway", "gateway")
    assert pick_sink(None, "hook", set(), hooks) == ("webhook", "hook")
    assert pick_sink("telegram", "tg", set(), hooks) is None  # callback not registered yet


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 5.0, 30.0) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


def test_shell_text_is_ocs_delivery_text_verbatim() -> None:
    r = run(stdout="built 3 targets", stderr="", exit_code=0)
    assert announce_text(job("shell"), "ok", r, will_retry=False) == "stdout:\nbuilt 3 targets"
    r = run(stdout="", stderr="make: *** [all] Error 2", exit_code=2, status="error")
    assert announce_text(job("shell"), "error", r, will_retry=True) == (
        f"{W} Shell job failed: nightly\n\nstderr:\nmake: *** [all] Error 2"
    )
    r = run(status="timeout", timed_out=True, details={"stdout_bytes": 0})
    assert announce_text(
        JobSpec(name="nightly", executor="shell", target="x", timeout=2.5),
        "timeout",
        r,
        will_retry=False,
    ) == (f"{W} Shell job failed: nightly\n\nShell command timed out after 2500ms")
    r = run(
        stdout="head",
        exit_code=0,
        details={"stdout_path": "/d/runs/1/stdout.txt", "stdout_bytes": 70000},
    )
    assert announce_text(job("shell"), "ok", r, will_retry=False) == (
        "stdout:\nhead\n[stdout offloaded: /d/runs/1/stdout.txt (70000 bytes)]"
    )


def test_agent_and_python_text_with_the_soft_failed_wording() -> None:
    ok = run(result={"summary": "Report sent."})
    assert announce_text(job("agent"), "ok", ok, will_retry=False) == "Report sent."
    failed = run(
        status="error",
        error="Agent signalled TASK_FAILED",
        result={"summary": "TASK_FAILED: db locked"},
    )
    assert announce_text(job("agent"), "error", failed, will_retry=True) == (
        f"{W} Job soft-failed (will retry): nightly\n\nTASK_FAILED: db locked"
    )
    http = run(status="error", error="gateway failed the agent turn (HTTP 500)")
    assert announce_text(job("agent"), "error", http, will_retry=False) == (
        f"{W} Job soft-failed (no retries configured): nightly\n\n"
        "gateway failed the agent turn (HTTP 500)"
    )
    assert announce_text(job(), "ok", run(result={"rows": 3}), will_retry=False) == '{"rows":3}'
    assert announce_text(job(), "ok", run(result=None), will_retry=False) == ""


def test_config_validation() -> None:
    for kw, field in (
        ({"max_attempts": 0}, "delivery.max_attempts"),
        ({"webhooks": {"h": "ftp://x"}}, "delivery.webhooks.h"),
        ({"aliases": {"@ops": DeliveryTarget()}}, "delivery.aliases.@ops"),
        ({"retry_base": 10.0, "retry_max": 5.0}, "delivery.retry_max"),
    ):
        with pytest.raises(ConfigError) as info:
            DeliveryConfig(**kw)
        assert info.value.field == field
