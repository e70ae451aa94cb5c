"""The pruner's ops on approvals and task groups (``PruneApprovals``, ``PruneGroups``),
on a real SQLite file.

What must hold: resolved approvals and ended groups older than the cutoff go, in
batches of at most ``limit`` (a group with its members); a pending approval, a resolved
one whose dispatch still waits for it, an open group and the newest row of each table
stay; each select is served by its partial index, not a scan.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest

from shepherd.store.ops import PruneApprovals, Pruned, PruneGroups
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

DAY = 86400.0
NOW = 1_700_000_000.0
OLD = NOW - 40 * DAY


@pytest.fixture
async def store(db_path: str) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(db_path)
    yield s
    await s.close()


def approval(
    conn: sqlite3.Connection, id_: int, status: str, *, resolved: float | None, waits: bool = False
) -> None:
    """An approval of dispatch ``id_``; ``waits``: that dispatch is still awaiting it."""
    conn.execute(
        "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority, not_before,"
        " max_attempts, created_at, updated_at) VALUES (?, ?, 1, 'j', 'enqueue', ?, 2, 0, 3, ?, ?)",
        (id_, id_, "awaiting_approval" if waits else "cancelled", OLD, OLD),
    )
    conn.execute(
        "INSERT INTO approvals (id, dispatch_id, job_id, job_name, status, on_timeout,"
        " requested_at, deadline, resolved_at) VALUES (?, ?, 1, 'j', ?, 'reject', ?, ?, ?)",
        (id_, id_, status, OLD, OLD + 3600, resolved),
    )


def group(conn: sqlite3.Connection, id_: int, status: str, *, ended: float | None) -> None:
    """A group of three members (``g<id>``; names are unique only among open groups)."""
    conn.execute(
        "INSERT INTO task_groups (id, name, status, timeout, heartbeat_window, created_at,"
        " updated_at, completed_at) VALUES (?, ?, ?, 600, 300, ?, ?, ?)",
        (id_, f"g{id_}", status, OLD, OLD, ended),
    )
    conn.executemany(
        "INSERT INTO task_group_members (group_id, pos, label, status) VALUES (?, ?, ?, ?)",
        [(id_, i, f"m{i}", "pending" if status == "open" else "completed") for i in range(3)],
    )


def ids(db_path: str, sql: str) -> list[int]:
    with sqlite3.connect(db_path) as conn:
        return [int(r[0]) for r in conn.execute(sql)]


async def drain(store: SqliteStore, op: PruneApprovals | PruneGroups) -> tuple[int, int]:
    """Apply ``op`` until its cursor says done; (rows deleted, ops applied)."""
    deleted = applied = 0
    while True:
        got: Pruned = await store.apply_one(op)
        assert got.deleted <= op.limit
        deleted, applied = deleted + got.deleted, applied + 1
        if got.cursor is None:
            return deleted, applied


async def test_resolved_approvals_go_pending_and_waited_for_ones_stay(
    store: SqliteStore, db_path: str
) -> None:
    with sqlite3.connect(db_path) as conn:
        for i in range(1, 8):  # 1-7: resolved long ago, all three outcomes
            approval(conn, i, ("approved", "rejected", "timed_out")[i % 3], resolved=OLD)
        approval(conn, 8, "pending", resolved=None)  # pending: stays
        approval(conn, 9, "approved", resolved=OLD, waits=True)  # its dispatch waits: stays
        approval(conn, 10, "rejected", resolved=NOW - DAY)  # recent: stays
        approval(conn, 11, "rejected", resolved=OLD)  # the newest row: stays
    deleted, applied = await drain(store, PruneApprovals(before=NOW - 30 * DAY, limit=3))
    assert deleted == 7 and applied == 3  # 3 + 3 + 1
    assert ids(db_path, "SELECT id FROM approvals ORDER BY id") == [8, 9, 10, 11]


async def test_ended_groups_go_with_their_members_open_ones_stay(
    store: SqliteStore, db_path: str
) -> None:
    with sqlite3.connect(db_path) as conn:
        for i in range(1, 6):  # 1-5: ended long ago
            group(conn, i, "completed" if i % 2 else "failed", ended=OLD)
        group(conn, 6, "open", ended=None)  # open: stays
        group(conn, 7, "completed", ended=NOW - DAY)  # recent: stays
        group(conn, 8, "failed", ended=OLD)  # the newest row: stays
    deleted, applied = await drain(store, PruneGroups(before=NOW - 30 * DAY, limit=2))
    assert deleted == 5 and applied == 3
    assert ids(db_path, "SELECT id FROM task_groups ORDER BY id") == [6, 7, 8]
    members = "SELECT DISTINCT group_id FROM task_group_members ORDER BY group_id"
    assert ids(db_path, members) == [6, 7, 8]
    assert ids(db_path, "SELECT COUNT(*) FROM task_group_members") == [9]


async def test_each_select_uses_its_partial_index(store: SqliteStore, db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        plans = {
            "approvals_resolved": "SELECT id FROM approvals WHERE status != 'pending'"
            " AND status IN ('approved', 'rejected', 'timed_out') AND resolved_at < 1",
            "task_groups_ended": "SELECT id FROM task_groups WHERE status != 'open'"
            " AND status IN ('completed', 'failed') AND completed_at < 1"
            " ORDER BY completed_at, id",
        }
        for index, sql in plans.items():
            detail = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert f"USING INDEX {index}" in detail, detail
