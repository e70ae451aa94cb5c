"""Reading an agent's reply: sentinel tokens and transient-error text.

Pure functions, no I/O. The agent executor calls :func:`classify_reply` on the reply
text and turns the :class:`ReplyVerdict` into an ``ExecResult``.

Semantics (OCS, SEMANTICS.md §2.4):

- A *sentinel* is a token at the very start of the trimmed reply, followed by the end
  of the text, whitespace or a colon: ``"HEARTBEAT_OK"``, ``"HEARTBEAT_OK all quiet"``
  and ``"HEARTBEAT_OK: nothing new"`` match, ``"HEARTBEAT_OKX"`` and prose do not.
- ``HEARTBEAT_OK`` / ``NO_FLUSH`` / ``IDEMPOTENT_SKIP`` → ok, delivery suppressed.
- ``TASK_FAILED`` → error "Agent signalled TASK_FAILED", retry eligible.
- A known transient-error phrase in the first 500 characters of the trimmed reply →
  error "Transient error in agent reply", retry eligible. Long replies that mention
  "rate limit" further down are real work, not errors.
- Anything else → ok, delivered per the job's delivery mode.

Precedence differs from OCS in one corner: OCS computes the flags independently, so
``"HEARTBEAT_OK: upstream rate limited"`` is an error there (with delivery suppressed).
Here an explicit ok-sentinel wins: the agent said in-band that the run is fine.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

__all__ = [
    "DRAIN_PATTERNS",
    "OK_SENTINELS",
    "SENTINELS",
    "TASK_FAILED_MESSAGE",
    "TRANSIENT_ERROR_PATTERNS",
    "TRANSIENT_MESSAGE",
    "TRANSIENT_SCAN_CHARS",
    "ReplyVerdict",
    "classify_reply",
    "detect_transient_error",
    "is_drain_error",
    "match_sentinel",
]

HEARTBEAT_OK = "HEARTBEAT_OK"
NO_FLUSH = "NO_FLUSH"
IDEMPOTENT_SKIP = "IDEMPOTENT_SKIP"
TASK_FAILED = "TASK_FAILED"

#: Every token an agent may answer with, in the order they are checked.
SENTINELS: tuple[str, ...] = (HEARTBEAT_OK, NO_FLUSH, IDEMPOTENT_SKIP, TASK_FAILED)
#: Tokens that mean "done, nothing to announce".
OK_SENTINELS: tuple[str, ...] = (HEARTBEAT_OK, NO_FLUSH, IDEMPOTENT_SKIP)

_OK_REASONS = {
    HEARTBEAT_OK: "heartbeat ok",
    NO_FLUSH: "nothing to flush",
    IDEMPOTENT_SKIP: "idempotency key already processed",
}

TASK_FAILED_MESSAGE = "Agent signalled TASK_FAILED"
TRANSIENT_MESSAGE = "Transient error in agent reply"

#: Only this many leading characters of the trimmed reply are scanned.
TRANSIENT_SCAN_CHARS = 500

# The OCS list (dispatcher-utils.js TRANSIENT_ERROR_PATTERNS), case-insensitive.
TRANSIENT_ERROR_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\btemporarily overloaded\b",
        r"\bservice\s+(?:is\s+)?unavailable\b",
        r"\brate\s*limit(?:ed|s?)?\b",
        r"\btoo\s+many\s+requests\b",
        r"\b5[0-9]{2}\b\s+(?:internal\s+)?server\s+error\b",
        r"\bgateway\s+timeout\b",
        r"\bbad\s+gateway\b",
        r"\bmodel\s+(?:is\s+)?(?:overloaded|unavailable)\b",
        r"\bAPI\s+(?:error|unavailable|timeout)\b",
        r"\bcapacity\s+(?:exceeded|limit)\b",
        r"\bretry\s+(?:after|later|in\s+\d)\b",
        r"\bcontext\s+(?:length|window)\s+exceeded\b",
        r"\btoken\s+limit\s+exceeded\b",
        r"gateway\s+is\s+draining",
        r"new\s+tasks\s+are\s+not\s+accepted",
        r"gateway.*draining.*restart",
    )
)

#: A gateway that is shutting down says so; the dispatcher defers instead of failing.
DRAIN_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"gateway\s+is\s+draining", re.IGNORECASE),
    re.compile(r"new\s+tasks\s+are\s+not\s+accepted", re.IGNORECASE),
)


class ReplyVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """What an agent reply means for the run."""

    status: Literal["ok", "error"]
    deliver: bool  # False: suppress announce delivery (sentinel or empty reply)
    retry: bool  # the failure may be retried (always False for ok)
    reason: str | None = None  # error message for errors, a log note for sentinels
    sentinel: str | None = None  # the token matched, if any


def match_sentinel(text: str, token: str) -> bool:
    """True when the trimmed ``text`` is ``token`` alone or followed by whitespace / ':'."""
    if not text or not token:
        return False
    return re.match(rf"{re.escape(token)}(?:\Z|[\s:])", text.strip()) is not None


def detect_transient_error(text: str) -> bool:
    """True when the first 500 chars of the trimmed reply contain a transient-error phrase."""
    head = text.strip()[:TRANSIENT_SCAN_CHARS]
    if not head:
        return False
    return any(p.search(head) for p in TRANSIENT_ERROR_PATTERNS)


def is_drain_error(text: str) -> bool:
    """True when ``text`` says the gateway is draining / not accepting new tasks."""
    trimmed = text.strip()
    return bool(trimmed) and any(p.search(trimmed) for p in DRAIN_PATTERNS)


def classify_reply(text: str) -> ReplyVerdict:
    """Decide status, delivery and retry for one agent reply."""
    trimmed = text.strip()
    if not trimmed:
        # OCS announces only non-blank content, so an empty reply is ok and silent.
        return ReplyVerdict(status="ok", deliver=False, retry=False, reason="empty reply")
    for token in OK_SENTINELS:
        if match_sentinel(trimmed, token):
            return ReplyVerdict(
                status="ok", deliver=False, retry=False, reason=_OK_REASONS[token], sentinel=token
            )
    if match_sentinel(trimmed, TASK_FAILED):
        return ReplyVerdict(
            status="error",
            deliver=True,
            retry=True,
            reason=TASK_FAILED_MESSAGE,
            sentinel=TASK_FAILED,
        )
    if detect_transient_error(trimmed):
        return ReplyVerdict(status="error", deliver=True, retry=True, reason=TRANSIENT_MESSAGE)
    return ReplyVerdict(status="ok", deliver=True, retry=False)
