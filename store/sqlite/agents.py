"""SQL of the agents registry: its write ops (``store.ops.agents``) and its reads.

The column lists, the row decoder and the rules of each write are in
``store.shared.agents``. ``rev`` is ``MAX(rev) + 1`` for every write of a row, so
``agents_since(rev)`` returns exactly the rows written after a reader's newest
(removed ones as tombstones).
"""

from __future__ import annotations

import sqlite3
from typing import Any, assert_never

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
from shepherd.store.shared.agents import AGENT_COLUMNS as _COLUMNS
from shepherd.store.shared.agents import DEFINITION as _DEFINITION
from shepherd.store.shared.agents import RUNNING as _RUNNING
from shepherd.store.shared.agents import agent as _agent
from shepherd.store.shared.agents import definition, state_changes, stored_changes

__all__ = ["agents_since", "apply_agent_op", "get_agent", "list_agents"]


def _rev(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(rev), 0) FROM agents").fetchone()
    return int(row[0]) + 1


def _save(conn: sqlite3.Connection, op: SaveAgent) -> str:
    s = op.spec
    row = conn.execute("SELECT removed FROM agents WHERE id = ?", (s.id,)).fetchone()
    values = definition(s)
    if row is not None and not row[0]:
        if op.mode == "add":
            return "exists"
        sets = ", ".join(f"{c} = ?" for c in _DEFINITION)
        conn.execute(
            f"UPDATE agents SET {sets}, source = ?, rev = ?, updated_at = ? WHERE id = ?",
            (*values, op.source, _rev(conn), op.now, s.id),
        )
        return "updated"
    conn.execute("DELETE FROM agents WHERE id = ?", (s.id,))  # a tombstone
    conn.execute(
        "INSERT INTO agents (id, name, capabilities, policy, max_concurrent, delivery, model,"
        " wake, wake_timeout, status, source, rev, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (s.id, *values, s.status, op.source, _rev(conn), op.now, op.now),
    )
    return "added"


def _update(conn: sqlite3.Connection, op: UpdateAgent) -> bool:
    changes = stored_changes(op.changes)
    sets = "".join(f"{c} = ?, " for c in changes)
    cur = conn.execute(
        f"UPDATE agents SET {sets}rev = ?, updated_at = ? WHERE id = ? AND removed = 0",
        (*changes.values(), _rev(conn), op.now, op.id),
    )
    return cur.rowcount > 0


def _state(conn: sqlite3.Connection, s: AgentState, now: float) -> str | None:
    row = conn.execute("SELECT status FROM agents WHERE id = ? AND removed = 0", (s.id,)).fetchone()
    if row is None:
        return None
    sets, status = state_changes(str(row[0]), s)
    if sets:
        columns = "".join(f"{c} = ?, " for c, _ in sets)
        conn.execute(
            f"UPDATE agents SET {columns}rev = ?, updated_at = ? WHERE id = ?",
            (*(v for _, v in sets), _rev(conn), now, s.id),
        )
    return status


def _remove(conn: sqlite3.Connection, op: RemoveAgent) -> bool:
    cur = conn.execute(
        "UPDATE agents SET removed = 1, rev = ?, updated_at = ? WHERE id = ? AND removed = 0",
        (_rev(conn), op.now, op.id),
    )
    return cur.rowcount > 0


def _notes(conn: sqlite3.Connection, op: AgentNotes) -> None:
    if op.waiting:
        conn.executemany(
            "UPDATE dispatches SET wait_reason = ? WHERE id = ? AND status = 'queued'",
            [(reason, d) for d, reason in op.waiting],
        )
    if op.assigned:
        conn.executemany(
            "UPDATE dispatches SET agent = ?, assigned_at = ?, wait_reason = NULL WHERE id = ?",
            [(agent, op.now, d) for d, agent in op.assigned],
        )
        conn.executemany(
            "UPDATE runs SET agent = ? WHERE id = (SELECT current_run_id FROM dispatches"
            " WHERE id = ?) AND status = 'running'",
            [(agent, d) for d, agent in op.assigned],
        )
    if op.claimed:  # by run id: a run that ended in the same commit keeps its worker too
        conn.executemany(
            "UPDATE runs SET agent = ? WHERE id = ?",
            [(agent, run) for run, _, agent, _ in op.claimed],
        )
        conn.executemany(
            "UPDATE dispatches SET agent = ?, assigned_at = ?, wait_reason = NULL"
            " WHERE id = ? AND current_run_id = ?",
            [(agent, at, d, run) for run, d, agent, at in op.claimed],
        )
    for s in op.states:
        _state(conn, s, op.now)


def apply_agent_op(conn: sqlite3.Connection, op: AgentOp) -> Any:
    match op:
        case SaveAgent():
            return _save(conn, op)
        case UpdateAgent():
            return _update(conn, op)
        case AgentStates(items, now):
            return [_state(conn, s, now) for s in items]
        case RemoveAgent():
            return _remove(conn, op)
        case AgentNotes():
            return _notes(conn, op)
        case _:
            assert_never(op)


def list_agents(conn: sqlite3.Connection) -> list[Agent]:
    rows = conn.execute(f"SELECT {_COLUMNS}{_RUNNING} FROM agents WHERE removed = 0 ORDER BY id")
    return [_agent(r) for r in rows]


def get_agent(conn: sqlite3.Connection, agent_id: str) -> Agent | None:
    row = conn.execute(
        f"SELECT {_COLUMNS}{_RUNNING} FROM agents WHERE id = ? AND removed = 0", (agent_id,)
    ).fetchone()
    return _agent(row) if row is not None else None


def agents_since(conn: sqlite3.Connection, rev: int) -> list[Agent]:
    """Rows written after ``rev`` (removed ones included, ``removed`` set), by rev."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM agents WHERE rev > ? ORDER BY rev", (rev,))
    return [_agent(r) for r in rows]
