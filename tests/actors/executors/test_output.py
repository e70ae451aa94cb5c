from __future__ import annotations

import pathlib

import pytest

from shepherd.actors.executors.output import (
    TRUNCATION_MARKER,
    OutputLimits,
    delivery_decision,
    normalize_stream,
    shell_delivery_text,
    shell_error_message,
    shell_output_text,
    soft_failed_text,
    truncate_utf8,
    validate_limits,
)
from shepherd.store.errors import ConfigError

WARN = "\u26a0\ufe0f"

# --- truncate_utf8 ---------------------------------------------------------------


def test_short_text_is_only_trimmed() -> None:
    assert truncate_utf8("  hello \n", 100) == "hello"


def test_text_exactly_at_budget_is_untouched() -> None:
    assert truncate_utf8("abcde", 5) == "abcde"


def test_ascii_truncation_keeps_marker_inside_budget() -> None:
    out = truncate_utf8("a" * 100, 40)
    assert out.endswith(TRUNCATION_MARKER)
    assert len(out.encode()) == 40
    assert out == "a" * (40 - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER


@pytest.mark.parametrize("char", ["é", "€", "😀", "語"])
@pytest.mark.parametrize("budget", range(16, 40))
def test_multibyte_truncation_never_splits_a_character(char: str, budget: int) -> None:
    text = "x" + char * 50
    out = truncate_utf8(text, budget)
    encoded = out.encode("utf-8")  # would raise on a lone surrogate
    assert len(encoded) <= budget
    head = out.removesuffix(TRUNCATION_MARKER)
    assert out.endswith(TRUNCATION_MARKER)
    assert set(head[1:]) <= {char}
    # as many whole characters as fit: one more would exceed the budget
    room = budget - len(TRUNCATION_MARKER.encode())
    assert len(head.encode()) <= room < len(head.encode()) + len(char.encode())


def test_truncation_happens_after_strip() -> None:
    # 10 content bytes surrounded by lots of whitespace fit a 10-byte budget.
    assert truncate_utf8(" " * 50 + "0123456789" + "\n" * 50, 10) == "0123456789"


def test_budget_smaller_than_marker_cuts_without_marker() -> None:
    out = truncate_utf8("€€€€€€", 7)
    assert out == "€€"


def test_custom_marker() -> None:
    assert truncate_utf8("abcdefghij", 6, marker="…") == "abc…"


# --- limits ------------------------------------------------------------------------


def test_default_limits_match_ocs() -> None:
    assert validate_limits({}) == OutputLimits(
        store=65536, excerpt=2000, summary=5000, offload=65536
    )


def test_limits_are_read_from_options() -> None:
    limits = validate_limits(
        {
            "output_store": 4096,
            "output_excerpt": 512,
            "output_summary": 2048,
            "output_offload": 1024,
        }
    )
    assert limits == OutputLimits(store=4096, excerpt=512, summary=2048, offload=1024)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"output_store": 0}, "options.output_store"),
        ({"output_excerpt": -1}, "options.output_excerpt"),
        ({"output_summary": "5000"}, "options.output_summary"),
        ({"output_offload": 1.5}, "options.output_offload"),
        ({"output_store": True}, "options.output_store"),
        ({"output_store": 1000, "output_excerpt": 1001}, "options.output_excerpt"),
        ({"output_excerpt": 3000, "output_summary": 2999}, "options.output_summary"),
    ],
)
def test_bad_limits_raise_config_error_naming_the_field(
    options: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        validate_limits(options)
    assert info.value.field == field


# --- normalize_stream --------------------------------------------------------------

SMALL = OutputLimits(store=100, excerpt=30, summary=50, offload=200)


def test_small_stream_is_stored_whole_and_not_offloaded(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "runs" / "7" / "stdout.txt"
    res = normalize_stream(b"hello\n", SMALL, path)
    assert res.text == "hello"
    assert res.bytes == 6
    assert res.offloaded is None
    assert res.truncated is False
    assert not path.exists()


def test_stream_over_store_limit_but_under_threshold_is_cut_to_store(
    tmp_path: pathlib.Path,
) -> None:
    data = b"a" * 150
    res = normalize_stream(data, SMALL, tmp_path / "stdout.txt")
    assert res.offloaded is None
    assert len(res.text.encode()) == 100
    assert res.text.endswith(TRUNCATION_MARKER)
    assert res.truncated is True
    assert len(res.excerpt.encode()) == 30


def test_stream_over_threshold_is_offloaded_in_full(tmp_path: pathlib.Path) -> None:
    data = ("line ü\n" * 100).encode()  # 800 bytes > 200
    path = tmp_path / "artifacts" / "runs" / "42" / "stdout.txt"
    res = normalize_stream(data, SMALL, path)
    assert res.offloaded == path
    assert path.read_bytes() == data  # parents were created, bytes verbatim
    assert res.bytes == len(data)
    assert len(res.text.encode()) <= SMALL.excerpt  # stored text cut to the excerpt
    assert res.text.endswith(TRUNCATION_MARKER)
    assert res.truncated is True


def test_large_stream_without_artifact_path_falls_back_to_store_limit() -> None:
    res = normalize_stream(b"b" * 500, SMALL, None)
    assert res.offloaded is None
    assert len(res.text.encode()) == SMALL.store


def test_blank_large_stream_is_not_offloaded(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "stderr.txt"
    res = normalize_stream(b" " * 500, SMALL, path)
    assert res.offloaded is None
    assert res.text == ""
    assert not path.exists()


def test_invalid_utf8_is_replaced_not_raised() -> None:
    res = normalize_stream(b"ok \xff\xfe end", SMALL, None)
    assert res.text == "ok \ufffd\ufffd end"


# --- shell texts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"exit_code": None, "timed_out": True, "timeout_ms": 5000},
            "Shell command timed out after 5000ms",
        ),
        ({"exit_code": 3}, "Shell exited with code 3"),
        ({"exit_code": -9}, "Shell terminated by signal SIGKILL"),
        ({"exit_code": None, "signal": "SIGTERM"}, "Shell terminated by signal SIGTERM"),
        ({"exit_code": None, "raw": "spawn ENOENT"}, "spawn ENOENT"),
    ],
)
def test_shell_error_message_wording(kwargs: dict[str, object], expected: str) -> None:
    assert shell_error_message(**kwargs) == expected  # type: ignore[arg-type]


def test_delivery_text_for_success_lists_both_streams_without_prefix() -> None:
    text = shell_delivery_text("backup", True, "done\n", "warn: x\n", 0, False, None)
    assert text == "stdout:\ndone\n\nstderr:\nwarn: x"


def test_delivery_text_for_failure_has_prefix_and_cuts_to_excerpt() -> None:
    text = shell_delivery_text("backup", False, "o" * 5000, "", 1, False, None, excerpt_limit=100)
    prefix = f"{WARN} Shell job failed: backup\n\n"
    assert text.startswith(prefix)
    body = text.removeprefix(prefix)
    assert body.startswith("stdout:\n")
    assert len(body.removeprefix("stdout:\n").encode()) == 100
    assert "stderr:" not in body


def test_delivery_text_without_output_uses_error_message() -> None:
    text = shell_delivery_text("sync", False, "", "  ", 2, False, None)
    assert text == f"{WARN} Shell job failed: sync\n\nShell exited with code 2"
    timed_out = shell_delivery_text("sync", False, "", "", None, True, None, timeout_ms=300000)
    assert timed_out.endswith("Shell command timed out after 300000ms")
    given = shell_delivery_text("sync", False, "", "", None, False, "boom")
    assert given.endswith("\n\nboom")


def test_delivery_text_without_output_on_success_says_no_output() -> None:
    assert shell_delivery_text("quiet", True, "", "", 0, False, None) == "(no output)"


def test_offloaded_stream_is_announced_with_path_and_size() -> None:
    text = shell_output_text(
        "head of output", "", stdout_path="/a/runs/1/stdout.txt", stdout_bytes=70000
    )
    assert text == "stdout:\nhead of output\n[stdout offloaded: /a/runs/1/stdout.txt (70000 bytes)]"


# --- delivery decision & soft failure ----------------------------------------------


@pytest.mark.parametrize(
    ("mode", "executor", "ok", "expected"),
    [
        ("none", "shell", False, False),
        ("none", "agent", False, False),
        ("announce", "shell", True, False),
        ("announce", "shell", False, True),
        ("announce", "agent", True, False),
        ("announce", "agent", False, True),
        ("announce", "event", False, False),
        ("announce", "main", False, False),
        ("announce-always", "shell", True, True),
        ("announce-always", "agent", True, True),
        ("announce-always", "event", True, True),
        ("announce-always", "main", False, True),
        ("announce-always", "watchdog", True, False),
    ],
)
def test_delivery_decision(mode: str, executor: str, ok: bool, expected: bool) -> None:
    assert delivery_decision(mode, executor, ok) is expected


def test_unknown_delivery_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        delivery_decision("always", "shell", True)


def test_soft_failed_wording() -> None:
    assert (
        soft_failed_text("nightly", "boom", True)
        == f"{WARN} Job soft-failed (will retry): nightly\n\nboom"
    )
    assert (
        soft_failed_text("nightly", "boom", False)
        == f"{WARN} Job soft-failed (no retries configured): nightly\n\nboom"
    )
