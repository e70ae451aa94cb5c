from __future__ import annotations

import pytest

from shepherd.actors.executors.sentinels import (
    SENTINELS,
    ReplyVerdict,
    classify_reply,
    detect_transient_error,
    is_drain_error,
    match_sentinel,
)


@pytest.mark.parametrize(
    "text",
    ["HEARTBEAT_OK", "  HEARTBEAT_OK\n", "HEARTBEAT_OK all quiet", "HEARTBEAT_OK: nothing new"],
)
def test_sentinel_matches_token_alone_or_followed_by_space_or_colon(text: str) -> None:
    assert match_sentinel(text, "HEARTBEAT_OK")


@pytest.mark.parametrize(
    "text", ["HEARTBEAT_OKX", "heartbeat_ok", "All good. HEARTBEAT_OK", "", "HEARTBEAT_OK-1"]
)
def test_sentinel_rejects_longer_tokens_case_changes_and_prose(text: str) -> None:
    assert not match_sentinel(text, "HEARTBEAT_OK")


def test_sentinel_token_is_literal_not_a_regex() -> None:
    assert not match_sentinel("AXB", "A.B")
    assert match_sentinel("A.B done", "A.B")


def test_sentinel_list_contains_the_four_ocs_tokens() -> None:
    assert set(SENTINELS) == {"HEARTBEAT_OK", "NO_FLUSH", "IDEMPOTENT_SKIP", "TASK_FAILED"}


@pytest.mark.parametrize("token", ["HEARTBEAT_OK", "NO_FLUSH", "IDEMPOTENT_SKIP"])
def test_ok_sentinels_are_ok_and_suppress_delivery(token: str) -> None:
    verdict = classify_reply(f"{token}: details")
    assert verdict.status == "ok"
    assert verdict.deliver is False
    assert verdict.retry is False
    assert verdict.sentinel == token


def test_task_failed_is_a_retryable_error_with_ocs_message() -> None:
    verdict = classify_reply("TASK_FAILED: could not reach the repo")
    assert verdict == ReplyVerdict(
        status="error",
        deliver=True,
        retry=True,
        reason="Agent signalled TASK_FAILED",
        sentinel="TASK_FAILED",
    )


def test_task_failedx_is_not_a_sentinel() -> None:
    assert classify_reply("TASK_FAILEDX").status == "ok"


@pytest.mark.parametrize(
    "reply",
    [
        "The AI service is temporarily overloaded. Please try again later.",
        "Service unavailable",
        "Service is unavailable right now",
        "Rate limited",
        "rate limit exceeded",
        "ratelimits hit",
        "Error: Too many requests",
        "503 Server Error",
        "500 internal server error",
        "Gateway Timeout",
        "502 Bad Gateway",
        "The model is overloaded",
        "model unavailable",
        "API error: upstream",
        "api timeout",
        "capacity exceeded",
        "Capacity limit reached",
        "Please retry after 30 seconds",
        "retry later",
        "retry in 5 minutes",
        "context length exceeded",
        "Context window exceeded for this model",
        "token limit exceeded",
        "Gateway is draining for restart",
        "New tasks are not accepted",
    ],
)
def test_transient_phrases_make_a_retryable_error(reply: str) -> None:
    verdict = classify_reply(reply)
    assert verdict.status == "error"
    assert verdict.retry is True
    assert verdict.reason == "Transient error in agent reply"
    assert verdict.sentinel is None


@pytest.mark.parametrize(
    "reply",
    [
        "Deployed the release; all checks green.",
        "rate limiting is configured at 10 rps",  # "limiting": no word boundary after limit
        "We should retry the job eventually.",
        "HTTP 404 not found",
        "the context is fine",
    ],
)
def test_ordinary_replies_are_ok_and_delivered(reply: str) -> None:
    assert classify_reply(reply) == ReplyVerdict(status="ok", deliver=True, retry=False)


def test_transient_phrase_beyond_500_chars_is_real_work() -> None:
    reply = "x" * 600 + " rate limit exceeded"
    assert not detect_transient_error(reply)
    assert classify_reply(reply).status == "ok"


def test_transient_phrase_inside_first_500_chars_of_a_long_reply_counts() -> None:
    reply = "rate limit exceeded " + "x" * 2000
    assert classify_reply(reply).status == "error"


def test_scan_window_is_measured_after_trimming() -> None:
    # 480 leading spaces would push the phrase past char 500 if not trimmed first.
    reply = " " * 480 + "y" * 10 + " too many requests"
    assert detect_transient_error(reply)
    # ...and a phrase that straddles char 500 of the trimmed reply is not seen.
    straddling = "y" * 490 + " too many requests"
    assert not detect_transient_error(straddling)


def test_ok_sentinel_wins_over_transient_text() -> None:
    verdict = classify_reply("HEARTBEAT_OK: upstream rate limited, will check later")
    assert verdict.status == "ok"
    assert verdict.deliver is False


def test_empty_reply_is_ok_and_not_delivered() -> None:
    verdict = classify_reply("  \n ")
    assert verdict.status == "ok"
    assert verdict.deliver is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Gateway is draining; new tasks are not accepted", True),
        ("error: gateway   is\ndraining", True),
        ("NEW TASKS ARE NOT ACCEPTED", True),
        ("Service unavailable", False),
        ("the gateway drained its queue", False),
        ("", False),
    ],
)
def test_drain_error_detection(text: str, expected: bool) -> None:
    assert is_drain_error(text) is expected


def test_drain_error_is_not_limited_to_500_chars() -> None:
    assert is_drain_error("x" * 1000 + " gateway is draining")
