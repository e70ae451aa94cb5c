"""SQL of the pause ops (``store.ops.controls``) and the ``pauses`` read."""

from __future__ import annotations

import sqlite3

from shepherd.store.models import Pause
from shepherd.store.ops.controls import ClearPauses, SetPause

__all__ = ["clear_pauses", "pauses", "set_pause"]


def _key(scope: str, name: str) -> str:
    return "runtime" if scope == "runtime" else f"{scope}:{name}"


def set_pause(conn: sqlite3.Connection, op: SetPause) -> bool:
    cur = conn.execute(
        "INSERT INTO pauses (scope, name, paused_at, paused_by, reason) VALUES (?,?,?,?,?)"
        " ON CONFLICT (scope, name) DO NOTHING",
        (op.scope, op.name, op.at, op.by, op.reason),
    )
    if cur.rowcount:
        return True
    if op.reason is not None:
        conn.execute(
            "UPDATE pauses SET reason = ? WHERE scope = ? AND name = ?",
            (op.reason, op.scope, op.name),
        )
    return False


def clear_pauses(conn: sqlite3.Connection, op: ClearPauses) -> list[str]:
    if op.scope is None:
        rows = conn.execute("DELETE FROM pauses RETURNING scope, name").fetchall()
    else:
        rows = conn.execute(
            "DELETE FROM pauses WHERE scope = ? AND name = ? RETURNING scope, name",
            (op.scope, op.name),
        ).fetchall()
    return sorted(_key(scope, name) for scope, name in rows)


def pauses(conn: sqlite3.Connection) -> list[Pause]:
    rows = conn.execute(
        "SELECT scope, name, paused_at, paused_by, reason FROM pauses"
        " ORDER BY paused_at, scope, name"
    ).fetchall()
    return [
        Pause(scope=scope, name=name, paused_at=at, by=by, reason=reason)
        for scope, name, at, by, reason in rows
    ]
