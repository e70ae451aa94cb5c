"""PostgreSQL SQL of the agents registry: its write ops (``store.ops.agents``) and its
reads, as ``store.sqlite.agents``; the column lists, the decoder and the rules of each
write are ``store.shared.agents``'.

Every write of an agent row takes the next ``rev`` from the ``agent_rev`` sequence, and
``agents_since(rev)`` answers the rows written after a reader's newest. A reader that
saw rev 12 must already see rev 11, so revs must commit in order across nodes: each
agent write first takes a transaction-level advisory lock (``_serialize``, held until
its batch commits), which also makes the read-then-write of ``SaveAgent`` and
``AgentState`` safe against another node's writer.
"""

from __future__ import annotations

from typing import Any, assert_never

import asyncpg

from shepherd.store.models import Agent
from shepherd.store.ops.agents import (
    AgentNotes,
    AgentOp,
    AgentState,
    AgentStates,
    RemoveAgent,
    SaveAgent,
    UpdateAgent,
)
from shepherd.store.postgres.messages import rowcount
from shepherd.store.shared.agents import (
    AGENT_COLUMNS,
    DEFINITION,
    RUNNING,
    agent,
    definition,
    state_changes,
    stored_changes,
)

__all__ = ["agents_since", "apply_agent_op", "get_agent", "list_agents"]

_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('shepherd:' || current_schema()"
    " || ':agent-rev', 0))"
)
_REV = "nextval('agent_rev')"


async def _serialize(conn: asyncpg.Connection) -> None:
    """Hold the agents' write lock until this transaction ends (re-entrant)."""
    await conn.execute(_LOCK)


async def _save(conn: asyncpg.Connection, op: SaveAgent) -> str:
    s = op.spec
    await _serialize(conn)
    removed = await conn.fetchval("SELECT removed FROM agents WHERE id = $1", s.id)
    values = definition(s)
    if removed is not None and not removed:
        if op.mode == "add":
            return "exists"
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(DEFINITION, 1))
        n = len(DEFINITION)
        await conn.execute(
            f"UPDATE agents SET {sets}, source = ${n + 1}, rev = {_REV}, updated_at = ${n + 2}"
            f" WHERE id = ${n + 3}",
            *values,
            op.source,
            float(op.now),
            s.id,
        )
        return "updated"
    await conn.execute("DELETE FROM agents WHERE id = $1", s.id)  # a tombstone
    await conn.execute(
        "INSERT INTO agents (id, name, capabilities, policy, max_concurrent, delivery, model,"
        " wake, wake_timeout, status, source, rev, created_at, updated_at)"
        f" VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,{_REV},$12,$12)",
        s.id,
        *values,
        s.status,
        op.source,
        float(op.now),
    )
    return "added"


async def _update(conn: asyncpg.Connection, op: UpdateAgent) -> bool:
    changes = stored_changes(op.changes)
    await _serialize(conn)
    sets = "".join(f"{c} = ${i}, " for i, c in enumerate(changes, 1))
    n = len(changes)
    status = await conn.execute(
        f"UPDATE agents SET {sets}rev = {_REV}, updated_at = ${n + 1}"
        f" WHERE id = ${n + 2} AND removed = 0",
        *changes.values(),
        float(op.now),
        op.id,
    )
    return rowcount(status) > 0


async def _state(conn: asyncpg.Connection, s: AgentState, now: float) -> str | None:
    found = await conn.fetchval("SELECT status FROM agents WHERE id = $1 AND removed = 0", s.id)
    if found is None:
        return None
    sets, status = state_changes(str(found), s)
    if sets:
        columns = "".join(f"{c} = ${i}, " for i, (c, _) in enumerate(sets, 1))
        n = len(sets)
        await conn.execute(
            f"UPDATE agents SET {columns}rev = {_REV}, updated_at = ${n + 1} WHERE id = ${n + 2}",
            *(v for _, v in sets),
            float(now),
            s.id,
        )
    return status


async def _states(
    conn: asyncpg.Connection, items: list[AgentState], now: float
) -> list[str | None]:
    if items:
        await _serialize(conn)
    return [await _state(conn, s, now) for s in items]


async def _remove(conn: asyncpg.Connection, op: RemoveAgent) -> bool:
    await _serialize(conn)
    status = await conn.execute(
        f"UPDATE agents SET removed = 1, rev = {_REV}, updated_at = $1"
        " WHERE id = $2 AND removed = 0",
        float(op.now),
        op.id,
    )
    return rowcount(status) > 0


async def _notes(conn: asyncpg.Connection, op: AgentNotes) -> None:
    if op.waiting:
        await conn.executemany(
            "UPDATE dispatches SET wait_reason = $1 WHERE id = $2 AND status = 'queued'",
            [(reason, d) for d, reason in op.waiting],
        )
    if op.assigned:
        await conn.executemany(
            "UPDATE dispatches SET agent = $1, assigned_at = $2, wait_reason = NULL WHERE id = $3",
            [(name, float(op.now), d) for d, name in op.assigned],
        )
        await conn.executemany(
            "UPDATE runs SET agent = $1 WHERE id = (SELECT current_run_id FROM dispatches"
            " WHERE id = $2) AND status = 'running'",
            [(name, d) for d, name in op.assigned],
        )
    if op.claimed:  # by run id: a run that ended in the same commit keeps its worker too
        await conn.executemany(
            "UPDATE runs SET agent = $1 WHERE id = $2",
            [(name, run) for run, _, name, _ in op.claimed],
        )
        await conn.executemany(
            "UPDATE dispatches SET agent = $1, assigned_at = $2, wait_reason = NULL"
            " WHERE id = $3 AND current_run_id = $4",
            [(name, float(at), d, run) for run, d, name, at in op.claimed],
        )
    await _states(conn, op.states, op.now)


async def apply_agent_op(conn: asyncpg.Connection, op: AgentOp) -> Any:
    match op:
        case SaveAgent():
            return await _save(conn, op)
        case UpdateAgent():
            return await _update(conn, op)
        case AgentStates(items, now):
            return await _states(conn, items, now)
        case RemoveAgent():
            return await _remove(conn, op)
        case AgentNotes():
            return await _notes(conn, op)
        case _:
            assert_never(op)


async def list_agents(conn: asyncpg.Connection) -> list[Agent]:
    rows = await conn.fetch(
        f'SELECT {AGENT_COLUMNS}{RUNNING} FROM agents WHERE removed = 0 ORDER BY id COLLATE "C"'
    )
    return [agent(r) for r in rows]


async def get_agent(conn: asyncpg.Connection, agent_id: str) -> Agent | None:
    row = await conn.fetchrow(
        f"SELECT {AGENT_COLUMNS}{RUNNING} FROM agents WHERE id = $1 AND removed = 0", agent_id
    )
    return agent(row) if row is not None else None


async def agents_since(conn: asyncpg.Connection, rev: int) -> list[Agent]:
    """Rows written after ``rev`` (removed ones included, ``removed`` set), by rev."""
    rows = await conn.fetch(
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE rev > $1 ORDER BY rev", int(rev)
    )
    return [agent(r) for r in rows]
