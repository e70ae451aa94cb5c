"""Entries and jobs for the dispatcher's loop-free tests."""

from __future__ import annotations

from typing import Any

from shepherd.actors.messages import Entry


def entry(dispatch_id: int, **kw: Any) -> Entry:
    fields: dict[str, Any] = {
        "id": dispatch_id,
        "seq": dispatch_id,
        "job_id": 1,
        "priority": 2,
        "not_before": 0.0,
        "attempt": 0,
        "max_attempts": 3,
        "kind": "schedule",
    }
    fields.update(kw)
    return Entry(**fields)
