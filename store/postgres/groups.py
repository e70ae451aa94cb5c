"""PostgreSQL SQL of the task-group ops and reads (mirrors ``store.sqlite.groups``; the
decoders and rules are ``store.shared.groups``).

Every op that can make a member final ends with ``_finish``: when no member is left
open it ends the group (``UPDATE ... WHERE status = 'open'``: once) and inserts the
summary's delivery in the same transaction.

Several nodes may report members of one group at once: each op first locks the
group's row (``FOR UPDATE``), then its members, always in that order. So the count
of open members in ``_finish`` sees every member another node finished (the last two
members finishing on two nodes still end the group), and ``MarkDead`` re-checks the
deadlines on rows no heartbeat can change until it commits.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from shepherd.store.models import GroupMember, TaskGroup
from shepherd.store.ops import InsertDeliveries
from shepherd.store.ops.groups import (
    MEMBER_FINAL,
    CreateGroup,
    MarkDead,
    Reported,
    ReportMember,
    is_dead,
    summary_text,
)
from shepherd.store.postgres.deliveries import insert_deliveries
from shepherd.store.shared.groups import (
    GROUP_COLUMNS,
    MEMBER_COLUMNS,
    OPEN_MEMBER,
    ended_status,
    group_from_row,
    member_from_row,
    report_set,
    summary_delivery,
)
from shepherd.store.shared.queries import numbered

__all__ = [
    "create_group",
    "get_group",
    "group_deadlines",
    "groups_by_id",
    "list_groups",
    "mark_dead",
    "open_groups",
    "report_member",
]

_BY_NAME = "WHERE name = $1 ORDER BY status = 'open' DESC, id DESC LIMIT 1"


async def create_group(conn: asyncpg.Connection, op: CreateGroup) -> int:
    group_id = await conn.fetchval(
        "INSERT INTO task_groups (name, status, timeout, heartbeat_window, created_by,"
        " delivery_to, delivery_channel, channel, target, created_at, updated_at)"
        " VALUES ($1,'open',$2,$3,$4,$5,$6,$7,$8,$9,$9) ON CONFLICT DO NOTHING RETURNING id",
        op.name, float(op.timeout), float(op.heartbeat_window), op.created_by, op.delivery_to,
        op.delivery_channel, op.channel, op.target, float(op.now),
    )  # fmt: skip
    if group_id is None:
        return 0
    await conn.execute(
        "INSERT INTO task_group_members (group_id, pos, label)"
        " SELECT $1, t.n - 1, t.label FROM unnest($2::text[]) WITH ORDINALITY AS t(label, n)",
        int(group_id),
        list(op.members),
    )
    return int(group_id)


async def _lock_head(conn: asyncpg.Connection, ref: int | str) -> tuple[int, str, str] | None:
    """(id, name, status) of the group ``ref`` names (an id, or a name: the open group
    of that name, else the newest), its row locked until the transaction ends."""
    if isinstance(ref, int):
        row = await conn.fetchrow(
            "SELECT id, name, status FROM task_groups WHERE id = $1 FOR UPDATE", ref
        )
    else:
        row = await conn.fetchrow(
            f"SELECT id, name, status FROM task_groups {_BY_NAME} FOR UPDATE", ref
        )
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


async def report_member(conn: asyncpg.Connection, op: ReportMember) -> Reported:
    head = await _lock_head(conn, op.group)
    if head is None:
        return Reported(result="no-group")
    group_id, name, group_status = head
    member = await conn.fetchval(
        "SELECT status FROM task_group_members WHERE group_id = $1 AND label = $2",
        group_id,
        op.label,
    )
    seen = Reported(result="no-member", group_id=group_id, group=name, group_status=group_status)
    if member is None:
        return seen
    if member in MEMBER_FINAL:
        return msgspec.structs.replace(seen, result="final", member_status=member)
    if group_status != "open":
        return msgspec.structs.replace(seen, result="closed", member_status=member)
    now = float(op.now)
    sql, args, status = report_set(numbered, op.report, str(member), now, op.message)
    n = len(args)
    await conn.execute(
        f"UPDATE task_group_members SET {sql} WHERE group_id = ${n + 1} AND label = ${n + 2}",
        *args,
        group_id,
        op.label,
    )
    await conn.execute("UPDATE task_groups SET updated_at = $1 WHERE id = $2", now, group_id)
    delivery_id = None
    if status in MEMBER_FINAL:
        group_status, delivery_id = await _finish(conn, group_id, now, op.max_attempts)
    return Reported(
        result="ok", member_status=status, group_id=group_id, group=name,
        group_status=group_status, delivery_id=delivery_id,
    )  # fmt: skip


async def mark_dead(conn: asyncpg.Connection, op: MarkDead) -> Reported:
    if await _lock_head(conn, op.group_id) is None:
        return Reported(result="no-group")
    group = await get_group(conn, op.group_id)
    assert group is not None  # locked above
    if group.status != "open":
        return Reported(
            result="closed", group_id=group.id, group=group.name, group_status=group.status
        )
    now = float(op.now)
    dead = [m.label for m in group.members if is_dead(group, m, now)]
    if dead:
        await conn.execute(
            "UPDATE task_group_members SET status = 'dead', finished_at = $1,"
            " error = 'timed out' WHERE group_id = $2 AND label = ANY($3::text[])",
            now,
            op.group_id,
            dead,
        )
        await conn.execute("UPDATE task_groups SET updated_at = $1 WHERE id = $2", now, op.group_id)
    group_status, delivery_id = await _finish(conn, op.group_id, now, op.max_attempts)
    return Reported(
        result="ok", group_id=group.id, group=group.name, group_status=group_status,
        delivery_id=delivery_id, dead=dead,
    )  # fmt: skip


async def _finish(
    conn: asyncpg.Connection, group_id: int, now: float, max_attempts: int
) -> tuple[str, int | None]:
    """End the group if every member is final: (its status, the summary's delivery).
    The caller holds the group's row lock."""
    left = await conn.fetchval(
        f"SELECT COUNT(*) FROM task_group_members WHERE group_id = $1 AND {OPEN_MEMBER}",
        group_id,
    )
    if left:
        return "open", None
    group = await get_group(conn, group_id)
    assert group is not None
    if group.status != "open":
        return group.status, None
    status = ended_status(group.members)
    summary = summary_text(group.name, status, group.members)
    row = await conn.fetchrow(
        "UPDATE task_groups SET status = $1, completed_at = $2, updated_at = $2, summary = $3"
        " WHERE id = $4 AND status = 'open' RETURNING channel, target",
        status,
        float(now),
        summary,
        group_id,
    )
    if row is None:
        return group.status, None
    new = summary_delivery(group.name, status, summary, row[0], row[1], max_attempts, now)
    if new is None:  # no target: the summary stays on the group
        return status, None
    (delivery_id,) = await insert_deliveries(conn, InsertDeliveries([new], now))
    await conn.execute(
        "UPDATE task_groups SET delivery_id = $1 WHERE id = $2", int(delivery_id), group_id
    )
    return status, int(delivery_id)


async def group_deadlines(conn: asyncpg.Connection, ids: list[int] | None) -> dict[int, float]:
    """The earliest member deadline of each open group (``ids``: these; None: all), as
    ``store.ops.groups.member_deadline`` computes it, in one aggregate per group."""
    sql = (
        "SELECT g.id, MIN(GREATEST(g.created_at + g.timeout,"
        " COALESCE(m.last_heartbeat + g.heartbeat_window, 0)))"
        " FROM task_groups g JOIN task_group_members m ON m.group_id = g.id"
        " WHERE g.status = 'open' AND m.status NOT IN ('completed', 'failed', 'dead')"
    )
    if ids is None:
        rows = await conn.fetch(sql + " GROUP BY g.id")
    else:
        rows = await conn.fetch(sql + " AND g.id = ANY($1::bigint[]) GROUP BY g.id", ids)
    return {int(r[0]): float(r[1]) for r in rows}


# -- reads --------------------------------------------------------------------------------


async def _groups(conn: asyncpg.Connection, where: str, *args: Any) -> list[TaskGroup]:
    rows = await conn.fetch(f"SELECT {GROUP_COLUMNS} FROM task_groups {where}", *args)
    if not rows:
        return []
    ids = [int(r[0]) for r in rows]
    members: dict[int, list[GroupMember]] = {i: [] for i in ids}
    for m in await conn.fetch(
        f"SELECT {MEMBER_COLUMNS} FROM task_group_members WHERE group_id = ANY($1::bigint[])"
        " ORDER BY group_id, pos",
        ids,
    ):
        members[int(m[0])].append(member_from_row(m))
    return [group_from_row(r, members[int(r[0])]) for r in rows]


async def get_group(conn: asyncpg.Connection, ref: str | int) -> TaskGroup | None:
    """By id, or by name (the open group of that name, else the newest)."""
    if isinstance(ref, int):
        found = await _groups(conn, "WHERE id = $1", ref)
    else:
        found = await _groups(conn, _BY_NAME, ref)
    return found[0] if found else None


async def groups_by_id(conn: asyncpg.Connection, ids: list[int]) -> list[TaskGroup]:
    if not ids:
        return []
    return await _groups(conn, "WHERE id = ANY($1::bigint[]) ORDER BY id", list(ids))


async def open_groups(conn: asyncpg.Connection) -> list[TaskGroup]:
    return await _groups(conn, "WHERE status = 'open' ORDER BY id")


async def list_groups(
    conn: asyncpg.Connection, *, status: str | None = None, limit: int = 100
) -> list[TaskGroup]:
    if status is None:
        return await _groups(conn, "ORDER BY id DESC LIMIT $1", limit)
    return await _groups(conn, "WHERE status = $1 ORDER BY id DESC LIMIT $2", status, limit)
