"""SQL of the task-group ops and reads (``task_groups``, ``task_group_members``).

Every op that can make a member final ends with ``_finish``: when no member is left
open it ends the group (``UPDATE ... WHERE status = 'open'``: once) and inserts the
summary's delivery in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

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
from shepherd.store.shared.queries import qmark
from shepherd.store.sqlite.deliveries import insert_deliveries

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


def create_group(conn: sqlite3.Connection, op: CreateGroup) -> int:
    cur = conn.execute(
        "INSERT INTO task_groups (name, status, timeout, heartbeat_window, created_by,"
        " delivery_to, delivery_channel, channel, target, created_at, updated_at)"
        " VALUES (?,'open',?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        (
            op.name, op.timeout, op.heartbeat_window, op.created_by, op.delivery_to,
            op.delivery_channel, op.channel, op.target, op.now, op.now,
        ),
    )  # fmt: skip
    if cur.rowcount == 0:
        return 0
    group_id = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT INTO task_group_members (group_id, pos, label) VALUES (?,?,?)",
        [(group_id, i, label) for i, label in enumerate(op.members)],
    )
    return group_id


def _head(conn: sqlite3.Connection, ref: int | str) -> tuple[int, str, str] | None:
    """(id, name, status) of the group ``ref`` names (an id, or a name: the open group
    of that name, else the newest)."""
    if isinstance(ref, int):
        row = conn.execute("SELECT id, name, status FROM task_groups WHERE id = ?", (ref,))
    else:
        row = conn.execute(
            "SELECT id, name, status FROM task_groups WHERE name = ?"
            " ORDER BY status = 'open' DESC, id DESC LIMIT 1",
            (ref,),
        )
    found = row.fetchone()
    return None if found is None else (int(found[0]), str(found[1]), str(found[2]))


def report_member(conn: sqlite3.Connection, op: ReportMember) -> Reported:
    head = _head(conn, op.group)
    if head is None:
        return Reported(result="no-group")
    group_id, name, group_status = head
    row = conn.execute(
        "SELECT status FROM task_group_members WHERE group_id = ? AND label = ?",
        (group_id, op.label),
    ).fetchone()
    seen = Reported(result="no-member", group_id=group_id, group=name, group_status=group_status)
    if row is None:
        return seen
    if row[0] in MEMBER_FINAL:
        return msgspec.structs.replace(seen, result="final", member_status=row[0])
    if group_status != "open":
        return msgspec.structs.replace(seen, result="closed", member_status=row[0])
    now = op.now
    sql, args, status = report_set(qmark, op.report, str(row[0]), now, op.message)
    conn.execute(
        f"UPDATE task_group_members SET {sql} WHERE group_id = ? AND label = ?",
        [*args, group_id, op.label],
    )
    conn.execute("UPDATE task_groups SET updated_at = ? WHERE id = ?", (now, group_id))
    delivery_id = None
    if status in MEMBER_FINAL:
        group_status, delivery_id = _finish(conn, group_id, now, op.max_attempts)
    return Reported(
        result="ok", member_status=status, group_id=group_id, group=name,
        group_status=group_status, delivery_id=delivery_id,
    )  # fmt: skip


def mark_dead(conn: sqlite3.Connection, op: MarkDead) -> Reported:
    group = get_group(conn, op.group_id)
    if group is None:
        return Reported(result="no-group")
    if group.status != "open":
        return Reported(
            result="closed", group_id=group.id, group=group.name, group_status=group.status
        )
    dead = [m.label for m in group.members if is_dead(group, m, op.now)]
    if dead:
        conn.executemany(
            "UPDATE task_group_members SET status = 'dead', finished_at = ?,"
            " error = 'timed out' WHERE group_id = ? AND label = ?",
            [(op.now, op.group_id, label) for label in dead],
        )
        conn.execute("UPDATE task_groups SET updated_at = ? WHERE id = ?", (op.now, op.group_id))
    group_status, delivery_id = _finish(conn, op.group_id, op.now, op.max_attempts)
    return Reported(
        result="ok", group_id=group.id, group=group.name, group_status=group_status,
        delivery_id=delivery_id, dead=dead,
    )  # fmt: skip


def _finish(
    conn: sqlite3.Connection, group_id: int, now: float, max_attempts: int
) -> tuple[str, int | None]:
    """End the group if every member is final: (its status, the summary's delivery)."""
    (left,) = conn.execute(
        f"SELECT COUNT(*) FROM task_group_members WHERE group_id = ? AND {OPEN_MEMBER}",
        (group_id,),
    ).fetchone()
    if left:
        return "open", None
    group = get_group(conn, group_id)
    assert group is not None
    if group.status != "open":
        return group.status, None
    status = ended_status(group.members)
    summary = summary_text(group.name, status, group.members)
    cur = conn.execute(
        "UPDATE task_groups SET status = ?, completed_at = ?, updated_at = ?, summary = ?"
        " WHERE id = ? AND status = 'open'",
        (status, now, now, summary, group_id),
    )
    if cur.rowcount != 1:
        return group.status, None
    channel, target = conn.execute(
        "SELECT channel, target FROM task_groups WHERE id = ?", (group_id,)
    ).fetchone()
    new = summary_delivery(group.name, status, summary, channel, target, max_attempts, now)
    if new is None:  # no target: the summary stays on the group
        return status, None
    (delivery_id,) = insert_deliveries(conn, InsertDeliveries([new], now))
    conn.execute("UPDATE task_groups SET delivery_id = ? WHERE id = ?", (delivery_id, group_id))
    return status, delivery_id


def group_deadlines(conn: sqlite3.Connection, ids: list[int] | None) -> dict[int, float]:
    """The earliest member deadline of each open group (``ids``: these; None: all), as
    ``store.ops.groups.member_deadline`` computes it, in one aggregate per group."""
    sql = (
        "SELECT g.id, MIN(MAX(g.created_at + g.timeout,"
        " COALESCE(m.last_heartbeat + g.heartbeat_window, 0)))"
        " FROM task_groups g JOIN task_group_members m ON m.group_id = g.id"
        " WHERE g.status = 'open' AND m.status NOT IN ('completed', 'failed', 'dead')"
    )
    out: dict[int, float] = {}
    if ids is None:
        for group_id, at in conn.execute(sql + " GROUP BY g.id"):
            out[int(group_id)] = float(at)
        return out
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        for group_id, at in conn.execute(sql + f" AND g.id IN ({marks}) GROUP BY g.id", part):
            out[int(group_id)] = float(at)
    return out


# -- reads --------------------------------------------------------------------------------


def _groups(conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> list[TaskGroup]:
    rows = conn.execute(f"SELECT {GROUP_COLUMNS} FROM task_groups {where}", args).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    members: dict[int, list[GroupMember]] = {i: [] for i in ids}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        for m in conn.execute(
            f"SELECT {MEMBER_COLUMNS} FROM task_group_members WHERE group_id IN ({marks})"
            " ORDER BY group_id, pos",
            part,
        ):
            members[m[0]].append(member_from_row(m))
    return [group_from_row(r, members[r[0]]) for r in rows]


def get_group(conn: sqlite3.Connection, ref: str | int) -> TaskGroup | None:
    """By id, or by name (the open group of that name, else the newest)."""
    if isinstance(ref, int):
        found = _groups(conn, "WHERE id = ?", (ref,))
    else:
        found = _groups(
            conn, "WHERE name = ? ORDER BY status = 'open' DESC, id DESC LIMIT 1", (ref,)
        )
    return found[0] if found else None


def groups_by_id(conn: sqlite3.Connection, ids: list[int]) -> list[TaskGroup]:
    out: list[TaskGroup] = []
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        out += _groups(conn, f"WHERE id IN ({','.join('?' * len(part))})", part)
    return out


def open_groups(conn: sqlite3.Connection) -> list[TaskGroup]:
    return _groups(conn, "WHERE status = 'open' ORDER BY id", ())


def list_groups(
    conn: sqlite3.Connection, *, status: str | None = None, limit: int = 100
) -> list[TaskGroup]:
    if status is None:
        return _groups(conn, "ORDER BY id DESC LIMIT ?", (limit,))
    return _groups(conn, "WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit))
