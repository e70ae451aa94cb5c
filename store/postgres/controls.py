"""SQL of the pause ops (``store.ops.controls``) and the ``pauses`` read on PostgreSQL,
as ``store.sqlite.controls``. The primary key (scope, name) is the last word when two
nodes pause the same scope at once: one insert wins, the other keeps its pause."""

from __future__ import annotations

import asyncpg

from shepherd.store.models import Pause
from shepherd.store.ops.controls import ClearPauses, SetPause

__all__ = ["clear_pauses", "pauses", "set_pause"]


def _key(scope: str, name: str) -> str:
    return "runtime" if scope == "runtime" else f"{scope}:{name}"


async def set_pause(conn: asyncpg.Connection, op: SetPause) -> bool:
    """Pause ``op.scope`` / ``op.name``; True if it was not paused (a pause already
    there keeps its time and author, and takes the new reason if one is given)."""
    inserted = await conn.fetchval(
        "INSERT INTO pauses (scope, name, paused_at, paused_by, reason)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, name) DO NOTHING RETURNING 1",
        op.scope,
        op.name,
        float(op.at),
        op.by,
        op.reason,
    )
    if inserted is not None:
        return True
    if op.reason is not None:
        await conn.execute(
            "UPDATE pauses SET reason = $1 WHERE scope = $2 AND name = $3",
            op.reason,
            op.scope,
            op.name,
        )
    return False


async def clear_pauses(conn: asyncpg.Connection, op: ClearPauses) -> list[str]:
    """Resume one scope (or every pause, ``op.scope`` None): the keys resumed, sorted."""
    if op.scope is None:
        rows = await conn.fetch("DELETE FROM pauses RETURNING scope, name")
    else:
        rows = await conn.fetch(
            "DELETE FROM pauses WHERE scope = $1 AND name = $2 RETURNING scope, name",
            op.scope,
            op.name,
        )
    return sorted(_key(scope, name) for scope, name in rows)


async def pauses(conn: asyncpg.Connection) -> list[Pause]:
    rows = await conn.fetch(
        "SELECT scope, name, paused_at, paused_by, reason FROM pauses"
        " ORDER BY paused_at, scope, name"
    )
    return [
        Pause(scope=scope, name=name, paused_at=at, by=by, reason=reason)
        for scope, name, at, by, reason in rows
    ]
