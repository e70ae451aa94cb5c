"""Messages say what they mean: closed sets are Literals, matches are exhaustive."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shepherd.actors.messages import OutcomeEvent

ROOT = Path(__file__).resolve().parents[2]


def _event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "OutcomeEvent", "dispatch_id": 1, "job": "j", "run_id": 2, "attempt": 1,
        "outcome": "ok", "status": "done", "final": True, "at": 0.0,
    }  # fmt: skip
    return {**base, **changes}


def test_outcome_events_take_only_the_known_outcomes_and_statuses() -> None:
    ev = msgspec.convert(_event(outcome="skipped", status="queued"), OutcomeEvent)
    assert (ev.outcome, ev.status) == ("skipped", "queued")
    for field, bad in (("status", "finished"), ("outcome", "fine")):
        with pytest.raises(msgspec.ValidationError, match=field):
            msgspec.convert(_event(**{field: bad}), OutcomeEvent)


def _matches(path: Path) -> list[ast.Match]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Match)]


def _ends_in_assert_never(node: ast.Match) -> bool:
    last = node.cases[-1]
    if not (isinstance(last.pattern, ast.MatchAs) and last.pattern.pattern is None):
        return False
    call = last.body[0]
    return (
        isinstance(call, ast.Expr)
        and isinstance(call.value, ast.Call)
        and isinstance(call.value.func, ast.Name)
        and call.value.func.id == "assert_never"
    )


def test_every_match_on_a_message_ends_in_assert_never() -> None:
    """In actors/ and runtime/; the CLI's match on an exception (which falls through to
    a re-raise) is not a message union."""
    missing = []
    for folder in ("actors", "runtime"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in _matches(path):
                if isinstance(node.subject, ast.Name) and node.subject.id == "exc":
                    continue
                if not _ends_in_assert_never(node):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert missing == []


def test_skip_reasons_are_a_closed_set() -> None:
    from typing import get_args

    from shepherd.actors.messages import SlotRecord
    from shepherd.store.models import SettleReason, SkipReason, SlotSkip
    from shepherd.store.ops import Settle, SkippedSlot

    skips = {"missed", "backoff", "disabled", "skipped-overlap", "queue-full", "idempotency-skip"}
    assert set(get_args(SkipReason)) == skips
    assert set(get_args(SlotSkip)) == {"missed", "backoff"}
    assert set(get_args(SettleReason)) == skips | {"expired", "job removed"}
    record = {"type": "SlotRecord", "job": "j", "reason": "missed"}
    assert msgspec.convert(record, SlotRecord).reason == "missed"
    with pytest.raises(msgspec.ValidationError, match="reason"):
        msgspec.convert({**record, "reason": "because"}, SlotRecord)
    settle = {"dispatch_id": 1, "status": "done", "outcome": "skipped", "reason": "bogus"}
    with pytest.raises(msgspec.ValidationError, match="reason"):
        msgspec.convert(settle, Settle)
    with pytest.raises(msgspec.ValidationError, match="reason"):
        msgspec.convert({"slot": 1.0, "reason": "disabled", "error": "x"}, SkippedSlot)
