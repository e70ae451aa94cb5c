"""SQL of workflow chains (rules: ``store.chains``; README "Chains").

- ``check_parent``: inside ``SaveJob``'s transaction, the ``jobs.parent`` column is set
  from the spec and the graph checked against the stored jobs, so two concurrent saves
  cannot make a cycle;
- ``fire_children``: inside ``FinishRuns``' transaction, the children of the parents
  whose run just ended for good get their ``chain`` dispatches (one indexed lookup
  for the whole op finds the runs whose job has children at all);
- ``insert_chain_dispatches``: the one insert every chain dispatch goes through;
- ``cancel_chain``: an operator's cascade over the queued descendants of a dispatch;
- ``refuse_parent``: ``DeleteJob`` of a job with children, when asked to refuse.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

import msgspec

from shepherd.store import chains
from shepherd.store.errors import ConfigError
from shepherd.store.ops import CancelChain, FinishRun, InsertDispatches, NewDispatch
from shepherd.store.ops.chains import FiredChild
from shepherd.store.shared.chains import BACKLOG_STATUSES, PARENT_RUN_COLUMNS, plan_children
from shepherd.store.sqlite.dispatches import insert_dispatches, next_id

__all__ = [
    "cancel_chain",
    "check_parent",
    "fire_children",
    "insert_chain_dispatches",
    "refuse_parent",
]


def check_parent(conn: sqlite3.Connection, name: str, spec: bytes) -> str | None:
    """The parent named by ``spec`` (None for a root), after checking the graph it
    makes with the stored jobs; a ConfigError naming ``parent`` if it cannot be."""
    parent = msgspec.json.decode(spec).get("parent")
    if parent is None:
        return None

    def parent_of(job: str) -> object:
        row = conn.execute("SELECT parent FROM jobs WHERE name = ?", (job,)).fetchone()
        return chains.MISSING if row is None else row[0]

    def children_of(job: str) -> list[str]:
        rows = conn.execute("SELECT name FROM jobs WHERE parent = ?", (job,)).fetchall()
        return [str(r[0]) for r in rows]

    problem = chains.graph_problem(name, str(parent), parent_of, children_of)
    if problem is not None:
        raise ConfigError(problem, field="parent")
    return str(parent)


def refuse_parent(conn: sqlite3.Connection, job_id: int) -> None:
    rows = conn.execute(
        "SELECT c.name, p.name FROM jobs c JOIN jobs p ON c.parent = p.name WHERE p.id = ?"
        " ORDER BY c.name",
        (job_id,),
    ).fetchall()
    if rows:
        names = ", ".join(str(r[0]) for r in rows)
        raise ConfigError(
            f"job {rows[0][1]!r} is the parent of {names}; remove them or give them"
            " another parent first",
            field="name",
        )


_PARENT_RUNS = (
    "SELECT r.id FROM runs r JOIN jobs p ON p.id = r.job_id WHERE r.id IN ({marks})"
    " AND EXISTS (SELECT 1 FROM jobs c WHERE c.parent = p.name)"
)
_RUN = f"SELECT {PARENT_RUN_COLUMNS} FROM runs r JOIN jobs p ON p.id = r.job_id WHERE r.id = ?"


def fire_children(
    conn: sqlite3.Connection, finals: list[FinishRun], origin: str, now: float
) -> list[FiredChild]:
    """The chain dispatches of ``finals`` (runs whose outcome was just accepted and
    whose dispatch is now ``done`` or ``dead``): their parents' matching children."""
    ids = [f.run_id for f in finals]
    if not ids:
        return []
    parents: set[int] = set()
    for k in range(0, len(ids), 500):
        part = ids[k : k + 500]
        sql = _PARENT_RUNS.format(marks=",".join("?" * len(part)))
        parents.update(int(r[0]) for r in conn.execute(sql, part))
    if not parents:
        return []
    rows: list[NewDispatch] = []
    skips: list[tuple[Any, ...]] = []
    planned: Counter[int] = Counter()  # rows of this op per child, not inserted yet
    for f in finals:
        if f.run_id in parents:
            _children_of_run(conn, f, now, rows, skips, planned)
    if skips:
        run_id = next_id(conn, "runs")
        conn.executemany(
            "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
            " finished_at, reason, error, details) VALUES (?, NULL, ?, ?, 0, 'skipped', ?, ?,"
            " ?, ?, ?)",
            [(run_id + i, *values) for i, values in enumerate(skips)],
        )
    return insert_chain_dispatches(conn, rows, origin, now)


def _children_of_run(
    conn: sqlite3.Connection,
    f: FinishRun,
    now: float,
    rows: list[NewDispatch],
    skips: list[tuple[Any, ...]],
    planned: Counter[int],
) -> None:
    run = conn.execute(_RUN, (f.run_id,)).fetchone()
    if run is None:
        return
    children = conn.execute(
        "SELECT id, name, spec, enabled FROM jobs WHERE parent = ? ORDER BY id", (run[1],)
    ).fetchall()
    plan_children(f, run, children, lambda cid: _backlog(conn, cid), now, rows, skips, planned)


def _backlog(conn: sqlite3.Connection, job_id: int) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM dispatches WHERE status IN (?, ?, ?) AND job_id = ?",
        (*BACKLOG_STATUSES, job_id),
    ).fetchone()
    return int(row[0])


def insert_chain_dispatches(
    conn: sqlite3.Connection, rows: list[NewDispatch], origin: str, now: float
) -> list[FiredChild]:
    """Insert chain dispatches (each row's system key binds it to one (parent run,
    child): a second insert for the same pair is a no-op); a held one has ``seq`` 0. The
    one place every chain dispatch is created, through ``insert_dispatches``, so the
    approval gate holds a gated child (``awaiting_approval``) in this transaction."""
    if not rows:
        return []
    out: list[FiredChild] = []
    results = insert_dispatches(conn, InsertDispatches(rows, origin, now))
    for row, got in zip(rows, results, strict=True):
        # (id, 0): held by the job's approval gate (``seq`` 0: not for the queue)
        if isinstance(got, tuple):
            out.append(FiredChild(row=row, id=got[0], seq=got[1]))
    return out


def cancel_chain(conn: sqlite3.Connection, op: CancelChain) -> list[int]:
    """Breadth first through the runs of each dispatch to the chain dispatches they
    fired; those not yet started are cancelled."""
    cancelled: list[int] = []
    frontier, seen = [op.dispatch_id], {op.dispatch_id}
    for _ in range(chains.MAX_DEPTH + 1):
        if not frontier:
            break
        marks = ",".join("?" * len(frontier))
        found = conn.execute(
            "SELECT d.id, d.status FROM dispatches d WHERE d.kind = 'chain' AND"
            f" d.parent_run_id IN (SELECT id FROM runs WHERE dispatch_id IN ({marks}))"
            " ORDER BY d.id",
            frontier,
        ).fetchall()
        frontier = []
        for dispatch_id, status in found:
            if dispatch_id in seen:
                continue
            seen.add(dispatch_id)
            frontier.append(int(dispatch_id))
            if status in ("queued", "awaiting_approval"):
                conn.execute(
                    "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
                    " last_error = 'cancelled with its parent', updated_at = ?"
                    " WHERE id = ? AND status IN ('queued', 'awaiting_approval')",
                    (op.now, dispatch_id),
                )
                cancelled.append(int(dispatch_id))
    return cancelled
