"""Engine-neutral rules of approvals (README "Approvals"), shared by ``store.sqlite``
and ``store.postgres``: what ``jobs.approval`` holds for a job, which dispatch kinds a
gate holds, the text of an approval request, why a dispatch was cancelled, and the
decoder of an ``approvals`` row. No SQL here: each engine's ``approval_gate`` and
``approvals`` modules run their own statements around these.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from shepherd.store.models import Approval

__all__ = [
    "APPROVAL_COLUMNS",
    "BACKLOG",
    "DEFAULT_UNGATED",
    "DELIVERY_ATTEMPTS",
    "UNGATED_KINDS",
    "NewRow",
    "approval_column",
    "approval_from_row",
    "cancel_reason",
    "gates",
    "mark_held",
    "request_text",
]

BACKLOG = "approval-backlog"  # last_error of a dispatch cancelled by a full backlog
# never gated by default: an operator's run-now; never at all: a retry or a replay of a
# dispatch (they are the same dispatch again, approved before its first attempt)
DEFAULT_UNGATED = frozenset({"run_now", "retry", "replay"})
UNGATED_KINDS = frozenset({"retry", "replay"})
DELIVERY_ATTEMPTS = 8  # the request delivery's attempt budget ([delivery] default)

# (dispatch id, job id, kind) of a row just inserted; or only its id (looked up)
NewRow = tuple[int, int, str] | int

APPROVAL_COLUMNS = (
    "id, dispatch_id, job_id, job_name, status, on_timeout, requested_at, deadline,"
    " resolved_at, resolved_by, reason, delivery_id, kind"
)


def approval_column(spec: bytes) -> bytes | None:
    """``jobs.approval`` for a job stored as ``spec`` (JSON): None when not gated."""
    data = msgspec.json.decode(spec)
    policy = data.get("approval") if isinstance(data, dict) else None
    if not isinstance(policy, dict) or not policy.get("required", True):
        return None
    options = data.get("options") or {}
    return msgspec.json.encode(
        {
            "timeout": float(policy.get("timeout", 3600.0)),
            "on_timeout": policy.get("on_timeout", "reject"),
            "max_pending": int(policy.get("max_pending", 10)),
            "sources": policy.get("sources"),
            "to": options.get("delivery_to") or None,
            "channel": options.get("delivery_channel") or None,
        }
    )


def mark_held(out: list[Any], held: set[int]) -> list[Any]:
    """An insert op's ``(id, seq)`` results with ``seq = 0`` for the rows ``gate`` held
    or cancelled: "committed, but not for the dispatcher"."""
    if not held:
        return out
    return [(o[0], 0) if isinstance(o, tuple) and o[0] in held else o for o in out]


def gates(policy: dict[str, Any], kind: str) -> bool:
    """Whether a job's gate (``policy``: its ``jobs.approval``) holds a dispatch of
    ``kind``."""
    if kind in UNGATED_KINDS:
        return False
    sources = policy.get("sources")
    return kind not in DEFAULT_UNGATED if sources is None else kind in sources


def cancel_reason(status: str, by: str | None) -> str:
    """The ``last_error`` of a dispatch whose approval ended ``status`` (not approved)."""
    return "approval timed out" if status == "timed_out" else f"rejected by {by}"


def request_text(
    *,
    job: str,
    dispatch_id: int,
    approval_id: int,
    kind: str,
    payload: Any,
    deadline: float,
    on_timeout: str,
) -> str:
    """The body of an approval request: what waits, until when, and the two commands."""
    task = "" if payload is None else msgspec.json.encode(payload).decode()
    if len(task) > 200:
        task = task[:199] + "…"
    until = datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    then = "approved" if on_timeout == "approve" else "rejected"
    lines = [
        f"✋ Approval needed: job {job} (dispatch {dispatch_id}, {kind}), approval {approval_id}",
        *([f"Payload: {task}"] if task else []),
        f"Deadline: {until} (then {then} automatically)",
        f"Approve: shepherd approvals approve {approval_id}",
        f'Reject: shepherd approvals reject {approval_id} --reason "..."',
    ]
    return "\n".join(lines)


def approval_from_row(r: Any) -> Approval:
    """An ``Approval`` from a row of ``APPROVAL_COLUMNS`` (a tuple or a driver record)."""
    return Approval(
        id=r[0],
        dispatch_id=r[1],
        job_id=r[2],
        job_name=r[3],
        status=r[4],
        on_timeout=r[5],
        requested_at=r[6],
        deadline=r[7],
        resolved_at=r[8],
        resolved_by=r[9],
        reason=r[10],
        delivery_id=r[11],
        kind=r[12],
    )
