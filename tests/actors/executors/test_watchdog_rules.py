from __future__ import annotations

from shepherd.actors.executors.watchdog_rules import WatchdogDecision, watchdog_decision

LABEL = "nightly-build"
CMD = "pgrep -f build.sh || echo done"


def decide(
    exit_code: int | None,
    stdout: str = "",
    stderr: str = "",
    elapsed: int = 5,
    timeout: int | None = 30,
    dispatched_at: str | None = "2026-02-01 10:00:00",
) -> WatchdogDecision:
    return watchdog_decision(
        exit_code, stdout, stderr, elapsed, timeout, LABEL, CMD, dispatched_at=dispatched_at
    )


def test_exit_2_is_a_transient_check_failure_without_alert() -> None:
    d = decide(2, stdout="", stderr="ssh: connection refused\n", elapsed=999)
    assert d.status == "ok"
    assert d.transient is True
    assert d.alert is None
    assert d.done is False
    assert d.summary == "Watchdog check failed (transient): ssh: connection refused"


def test_exit_2_wins_even_past_the_timeout() -> None:
    assert decide(2, elapsed=100, timeout=30).alert is None


def test_exit_0_with_stdout_means_done_and_disarms() -> None:
    d = decide(0, stdout="finished\n", elapsed=100, timeout=30)
    assert d == WatchdogDecision(
        status="ok",
        alert='\u2705 [watchdog] Task "nightly-build" completed -- watchdog disarmed',
        done=True,
        transient=False,
        summary='\u2705 [watchdog] Task "nightly-build" completed -- watchdog disarmed',
    )


def test_exit_1_is_stuck_with_full_alert() -> None:
    d = decide(1, stdout="pid 123 idle", stderr="no progress", elapsed=5, timeout=30)
    assert d.status == "ok"
    assert d.done is False
    assert d.summary == "Watchdog alert fired: check command reported stuck"
    assert d.alert == "\n".join(
        [
            '\U0001f6a8 [watchdog] Task "nightly-build" appears stuck',
            "- Dispatched: 2026-02-01 10:00:00",
            "- Running for: 5 minutes (threshold: 30 min)",
            "- Reason: check command reported stuck",
            f"- Check: {CMD}",
            "- Error: no progress",
            "- Output: pid 123 idle",
        ]
    )


def test_timeout_reached_with_empty_output_is_stuck() -> None:
    d = decide(0, elapsed=30, timeout=30, dispatched_at=None)
    assert d.alert is not None
    assert d.summary == "Watchdog alert fired: running for 30min (threshold: 30min)"
    assert "- Dispatched: unknown" in d.alert
    assert "- Error:" not in d.alert
    assert "- Output:" not in d.alert


def test_one_minute_before_timeout_is_still_running() -> None:
    d = decide(0, elapsed=29, timeout=30)
    assert d == WatchdogDecision(
        status="ok",
        alert=None,
        done=False,
        transient=False,
        summary="Watchdog check: target still running (29min elapsed)",
    )


def test_no_timeout_configured_never_times_out() -> None:
    assert decide(0, elapsed=10_000, timeout=None).alert is None
    stuck = decide(1, elapsed=3, timeout=None)
    assert stuck.alert is not None
    assert "(threshold: ? min)" in stuck.alert


def test_error_and_output_lines_are_capped_at_500_chars() -> None:
    d = decide(1, stdout="o" * 900, stderr="e" * 900)
    assert d.alert is not None
    lines = d.alert.split("\n")
    assert "- Error: " + "e" * 500 in lines
    assert "- Output: " + "o" * 500 in lines


def test_unknown_exit_code_is_an_error() -> None:
    d = decide(127, stderr="command not found")
    assert d.status == "error"
    assert d.alert is None
    assert d.summary == "Watchdog check command returned unexpected exit code 127"


def test_unknown_exit_code_past_timeout_still_alerts() -> None:
    # timedOut is checked before the "other exit code" branch, as in OCS.
    assert decide(127, elapsed=40, timeout=30).alert is not None


def test_whitespace_only_stdout_is_not_completion() -> None:
    assert decide(0, stdout="  \n").done is False
