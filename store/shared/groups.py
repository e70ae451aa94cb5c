"""Engine-neutral pieces of task groups, shared by ``store.sqlite.groups`` and
``store.postgres.groups``: the column lists and row decoders of ``task_groups`` and
``task_group_members``, what a member's report sets, how a finished group ends, and
the summary's delivery. No SQL runs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shepherd.store.models import GroupMember, TaskGroup
from shepherd.store.ops import NewDelivery
from shepherd.store.shared.queries import Mark

__all__ = [
    "GROUP_COLUMNS",
    "MEMBER_COLUMNS",
    "OPEN_MEMBER",
    "ended_status",
    "group_from_row",
    "member_from_row",
    "report_set",
    "summary_delivery",
]

GROUP_COLUMNS = (
    "id, name, status, timeout, heartbeat_window, created_at, updated_at, created_by,"
    " delivery_to, delivery_channel, completed_at, summary, delivery_id"
)
MEMBER_COLUMNS = "group_id, label, status, started_at, finished_at, last_heartbeat, message, error"
OPEN_MEMBER = "status NOT IN ('completed', 'failed', 'dead')"  # a member not final yet


def member_from_row(m: Sequence[Any]) -> GroupMember:
    """A member from a row of ``MEMBER_COLUMNS``."""
    return GroupMember(
        label=m[1],
        status=m[2],
        started_at=m[3],
        finished_at=m[4],
        last_heartbeat=m[5],
        message=m[6],
        error=m[7],
    )


def group_from_row(r: Sequence[Any], members: list[GroupMember]) -> TaskGroup:
    """A group from a row of ``GROUP_COLUMNS`` and its members (in order)."""
    return TaskGroup(
        id=r[0],
        name=r[1],
        status=r[2],
        timeout=r[3],
        heartbeat_window=r[4],
        created_at=r[5],
        updated_at=r[6],
        members=members,
        created_by=r[7],
        delivery_to=r[8],
        delivery_channel=r[9],
        completed_at=r[10],
        summary=r[11],
        delivery_id=r[12],
    )


def report_set(
    mark: Mark, report: str, status: str, now: float, message: str | None
) -> tuple[str, list[Any], str]:
    """What a member's ``report`` sets (the SET list, its values numbered from
    ``mark(1)``) and the member's status after it (``status``: as it is now)."""
    marks = [mark(i) for i in range(1, 4)]
    if report == "heartbeat":
        return f"last_heartbeat = {marks[0]}", [now], status
    if report == "started":
        sql = (
            f"status = 'started', started_at = COALESCE(started_at, {marks[0]}),"
            f" last_heartbeat = {marks[1]}"
        )
        return sql, [now, now], "started"
    column = "message" if report == "completed" else "error"
    final = "completed" if report == "completed" else "failed"
    sql = (
        f"status = '{final}', finished_at = {marks[0]}, last_heartbeat = {marks[1]},"
        f" {column} = {marks[2]}"
    )
    return sql, [now, now, message], final


def ended_status(members: Sequence[GroupMember]) -> str:
    """A finished group's status: ``completed`` if every member completed."""
    return "completed" if all(m.status == "completed" for m in members) else "failed"


def summary_delivery(
    name: str,
    status: str,
    summary: str,
    channel: str | None,
    target: str | None,
    max_attempts: int,
    now: float,
) -> NewDelivery | None:
    """The delivery of a finished group's summary; None without a target (the summary
    stays on the group)."""
    if not channel and not target:
        return None
    return NewDelivery(
        kind="group", body=summary, channel=channel, target=target,
        max_attempts=max_attempts, next_attempt_at=now, job_name=f"group:{name}",
        outcome=status,
    )  # fmt: skip
