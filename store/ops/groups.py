"""Write ops on task groups (OCS's task tracker, a dead-man switch), and its rules.

A group expects members (labels). Each member goes ``pending → started →
completed / failed``, or ``dead``: a member not yet final is dead once

    now ≥ created_at + timeout  AND  no heartbeat in the last heartbeat_window seconds

(``started`` counts as a heartbeat; OCS: timeout 600 s, window min(timeout, 300 s)).
``member_deadline`` is that instant; ``MarkDead`` re-checks it against the stored row
in its transaction, so a heartbeat committed meanwhile (by any process) wins.

When the last member becomes final, the same transaction ends the group
(``completed`` if every member completed, else ``failed``), writes its summary
(``summary_text``) and inserts the summary's delivery, once: the group's status
changes only from ``open``, and ``delivery_id`` is unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from shepherd.store.models import GroupMember, TaskGroup

__all__ = [
    "GROUP_OP_TYPES",
    "MEMBER_FINAL",
    "CreateGroup",
    "GroupOp",
    "MarkDead",
    "ReportMember",
    "Reported",
    "is_dead",
    "member_deadline",
    "next_deadline",
    "summary_text",
]

MEMBER_FINAL = frozenset({"completed", "failed", "dead"})
Report = Literal["started", "completed", "failed", "heartbeat"]


def member_deadline(group: TaskGroup, member: GroupMember) -> float | None:
    """When ``member`` becomes dead if it stays silent; None once it is final."""
    if member.status in MEMBER_FINAL:
        return None
    at = group.created_at + group.timeout
    if member.last_heartbeat is not None:
        at = max(at, member.last_heartbeat + group.heartbeat_window)
    return at


def is_dead(group: TaskGroup, member: GroupMember, now: float) -> bool:
    deadline = member_deadline(group, member)
    return deadline is not None and now >= deadline


def next_deadline(group: TaskGroup) -> float | None:
    """The earliest deadline of an open group's members (None: nothing to time out)."""
    if group.status != "open":
        return None
    times = [t for m in group.members if (t := member_deadline(group, m)) is not None]
    return min(times) if times else None


def summary_text(name: str, status: str, members: Sequence[GroupMember]) -> str:
    """``Task group nightly failed: 1/3 ok`` then one line per member, in order:
    ``[ok] a: msg``, ``[FAILED] b: err``, ``[DEAD] c: timed out``."""
    ok = sum(1 for m in members if m.status == "completed")
    lines = [f"Task group {name} {status}: {ok}/{len(members)} ok"]
    for m in members:
        if m.status == "completed":
            lines.append(f"[ok] {m.label}: {m.message or 'completed'}")
        elif m.status == "failed":
            lines.append(f"[FAILED] {m.label}: {m.error or m.message or 'failed'}")
        else:
            lines.append(f"[DEAD] {m.label}: {m.error or 'timed out'}")
    return "\n".join(lines)


class CreateGroup(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Returns the new group's id, or 0 when an open group of that name exists."""

    name: str
    members: list[str]
    timeout: float
    heartbeat_window: float
    now: float
    created_by: str | None = None
    delivery_to: str | None = None
    delivery_channel: str | None = None
    channel: str | None = None  # resolved through the aliases
    target: str | None = None


class ReportMember(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A member's report (or heartbeat) of ``group`` (an id, or a name: the open group
    of that name, else the newest). Returns ``Reported``; nothing changes unless its
    ``result`` is ``ok``. Costs the member's row, not the group's members."""

    group: int | str
    label: str
    report: Report
    now: float
    message: str | None = None
    max_attempts: int = 8  # of the summary's delivery


class MarkDead(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Members of ``group_id`` whose deadline has passed at ``now`` → dead (re-checked
    on the stored rows). Returns ``Reported`` (``dead``: the labels marked)."""

    group_id: int
    now: float
    max_attempts: int = 8


class Reported(msgspec.Struct, frozen=True, kw_only=True):
    result: Literal["ok", "no-group", "no-member", "final", "closed"]
    group_id: int | None = None
    group: str | None = None  # its name
    member_status: str | None = None  # the member's status after (or as found)
    group_status: str | None = None
    delivery_id: int | None = None  # the summary's delivery, when this ended the group
    dead: list[str] = msgspec.field(default_factory=list)


GroupOp = CreateGroup | ReportMember | MarkDead
GROUP_OP_TYPES: tuple[type, ...] = (CreateGroup, ReportMember, MarkDead)
