"""PostgreSQL SQL of workflow chains (mirrors ``store.sqlite.chains``; rules:
``store.chains`` and ``store.shared.chains``; README "Chains").

- ``check_parent``: inside ``SaveJob``'s transaction, the ``jobs.parent`` column is set
  from the spec and the graph checked against the stored jobs. Two nodes may save at
  once, so a save that sets a parent first takes the schema's ``chains`` advisory
  transaction lock: two concurrent saves cannot make a cycle;
- ``fire_children``: inside ``FinishRuns``' transaction, the children of the parents
  whose run just ended for good get their ``chain`` dispatches (their system keys make
  a second insert for the same (parent run, child) a no-op, on any node);
- ``insert_chain_dispatches``: the one insert every chain dispatch goes through;
- ``cancel_chain``: an operator's cascade over the queued descendants of a dispatch;
- ``refuse_parent``: ``DeleteJob`` of a job with children, when asked to refuse.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg
import msgspec

from shepherd.store import chains
from shepherd.store.errors import ConfigError
from shepherd.store.ops import CancelChain, FinishRun, InsertDispatches, NewDispatch
from shepherd.store.ops.chains import FiredChild
from shepherd.store.postgres.dispatches import insert_dispatches
from shepherd.store.shared.chains import (
    BACKLOG_STATUSES,
    PARENT_RUN_COLUMNS,
    SKIP_COLUMNS,
    plan_children,
)

__all__ = [
    "cancel_chain",
    "check_parent",
    "fire_children",
    "insert_chain_dispatches",
    "refuse_parent",
]

# the same key as ``opening.advisory_key(schema, 'chains')``, from inside the op
_GRAPH_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('shepherd:' || current_schema() ||"
    " ':chains', 0))"
)
# the stored ancestors of a job (name, parent), and the descendants of another, each
# walk bounded a little past ``chains.MAX_DEPTH`` (a stored cycle cannot loop it)
_UP = (
    "WITH RECURSIVE up(name, parent, depth) AS ("
    " SELECT name, parent, 0 FROM jobs WHERE name = $1"
    " UNION ALL SELECT j.name, j.parent, up.depth + 1 FROM jobs j JOIN up ON j.name = up.parent"
    " WHERE up.depth < $2)"
    " SELECT name, parent FROM up"
)
_DOWN = (
    "WITH RECURSIVE down(name, parent, depth) AS ("
    " SELECT name, parent, 1 FROM jobs WHERE parent = $1"
    " UNION ALL SELECT j.name, j.parent, down.depth + 1 FROM jobs j"
    " JOIN down ON j.parent = down.name WHERE down.depth < $2)"
    " SELECT name, parent FROM down"
)


async def check_parent(conn: asyncpg.Connection, name: str, spec: bytes) -> str | None:
    """The parent named by ``spec`` (None for a root), after checking the graph it
    makes with the stored jobs; a ConfigError naming ``parent`` if it cannot be."""
    parent = msgspec.json.decode(spec).get("parent")
    if parent is None:
        return None
    parent = str(parent)
    await conn.execute(_GRAPH_LOCK)
    bound = chains.MAX_DEPTH + 2
    parents: dict[str, str | None] = {str(r[0]): r[1] for r in await conn.fetch(_UP, parent, bound)}
    children: dict[str, list[str]] = {}
    for r in await conn.fetch(_DOWN, name, bound):
        children.setdefault(str(r[1]), []).append(str(r[0]))

    def parent_of(job: str) -> object:
        return parents.get(job, chains.MISSING)

    def children_of(job: str) -> list[str]:
        return children.get(job, [])

    problem = chains.graph_problem(name, parent, parent_of, children_of)
    if problem is not None:
        raise ConfigError(problem, field="parent")
    return parent


async def refuse_parent(conn: asyncpg.Connection, job_id: int) -> None:
    rows = await conn.fetch(
        "SELECT c.name, p.name FROM jobs c JOIN jobs p ON c.parent = p.name WHERE p.id = $1"
        " ORDER BY c.name",
        job_id,
    )
    if rows:
        names = ", ".join(str(r[0]) for r in rows)
        raise ConfigError(
            f"job {rows[0][1]!r} is the parent of {names}; remove them or give them"
            " another parent first",
            field="name",
        )


# one probe of the partial index ``jobs_parent``: no chain at all, nothing to look up
_ANY_CHILD = "SELECT EXISTS (SELECT 1 FROM jobs WHERE parent IS NOT NULL)"
_PARENT_RUNS = (
    "SELECT r.id FROM runs r JOIN jobs p ON p.id = r.job_id WHERE r.id = ANY($1::bigint[])"
    " AND EXISTS (SELECT 1 FROM jobs c WHERE c.parent = p.name)"
)
_RUN = f"SELECT {PARENT_RUN_COLUMNS} FROM runs r JOIN jobs p ON p.id = r.job_id WHERE r.id = $1"
_CHILDREN = "SELECT id, name, spec, enabled FROM jobs WHERE parent = $1 ORDER BY id"
_BACKLOG = (
    "SELECT job_id, COUNT(*) FROM dispatches WHERE status = ANY($1::text[])"
    " AND job_id = ANY($2::bigint[]) GROUP BY job_id"
)
_SKIP = (
    f"INSERT INTO runs (dispatch_id, attempt, status, {SKIP_COLUMNS})"
    " VALUES (NULL, 0, 'skipped', $1, $2, $3, $4, $5, $6, $7)"
)


async def fire_children(
    conn: asyncpg.Connection, finals: list[FinishRun], origin: str, now: float
) -> list[FiredChild]:
    """The chain dispatches of ``finals`` (runs whose outcome was just accepted and
    whose dispatch is now ``done`` or ``dead``): their parents' matching children."""
    ids = [f.run_id for f in finals]
    if not ids or not await conn.fetchval(_ANY_CHILD):
        return []
    parents = {int(r[0]) for r in await conn.fetch(_PARENT_RUNS, ids)}
    if not parents:
        return []
    rows: list[NewDispatch] = []
    skips: list[tuple[Any, ...]] = []
    planned: Counter[int] = Counter()  # rows of this op per child, not inserted yet
    for f in finals:
        if f.run_id in parents:
            await _children_of_run(conn, f, now, rows, skips, planned)
    if skips:
        await conn.executemany(
            _SKIP, [(*values[:2], float(now), float(now), *values[4:]) for values in skips]
        )
    return await insert_chain_dispatches(conn, rows, origin, now)


async def _children_of_run(
    conn: asyncpg.Connection,
    f: FinishRun,
    now: float,
    rows: list[NewDispatch],
    skips: list[tuple[Any, ...]],
    planned: Counter[int],
) -> None:
    run = await conn.fetchrow(_RUN, f.run_id)
    if run is None:
        return
    children = await conn.fetch(_CHILDREN, run[1])
    counts: dict[int, int] = {}
    if children:
        found = await conn.fetch(_BACKLOG, list(BACKLOG_STATUSES), [int(c[0]) for c in children])
        counts = {int(r[0]): int(r[1]) for r in found}
    plan_children(f, run, children, lambda cid: counts.get(cid, 0), now, rows, skips, planned)


async def insert_chain_dispatches(
    conn: asyncpg.Connection, rows: list[NewDispatch], origin: str, now: float
) -> list[FiredChild]:
    """Insert chain dispatches (each row's system key binds it to one (parent run,
    child): a second insert for the same pair is a no-op); a held one has ``seq`` 0. The
    one place every chain dispatch is created, through ``insert_dispatches``, so the
    approval gate holds a gated child (``awaiting_approval``) in this transaction."""
    if not rows:
        return []
    out: list[FiredChild] = []
    results = await insert_dispatches(conn, InsertDispatches(rows, origin, now))
    for row, got in zip(rows, results, strict=True):
        # (id, 0): held by the job's approval gate (``seq`` 0: not for the queue)
        if isinstance(got, tuple):
            out.append(FiredChild(row=row, id=got[0], seq=got[1]))
    return out


async def cancel_chain(conn: asyncpg.Connection, op: CancelChain) -> list[int]:
    """Breadth first through the runs of each dispatch to the chain dispatches they
    fired; those not yet started are cancelled (a conditional update: one a node has
    just claimed is left alone)."""
    cancelled: list[int] = []
    frontier, seen = [op.dispatch_id], {op.dispatch_id}
    for _ in range(chains.MAX_DEPTH + 1):
        if not frontier:
            break
        found = await conn.fetch(
            "SELECT d.id, d.status FROM dispatches d WHERE d.kind = 'chain' AND"
            " d.parent_run_id IN (SELECT id FROM runs WHERE dispatch_id = ANY($1::bigint[]))"
            " ORDER BY d.id",
            frontier,
        )
        frontier = []
        for dispatch_id, status in found:
            if dispatch_id in seen:
                continue
            seen.add(dispatch_id)
            frontier.append(int(dispatch_id))
            if status in ("queued", "awaiting_approval"):
                got = await conn.execute(
                    "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
                    " last_error = 'cancelled with its parent', updated_at = $1"
                    " WHERE id = $2 AND status IN ('queued', 'awaiting_approval')",
                    float(op.now),
                    dispatch_id,
                )
                if got.split()[-1] == "1":
                    cancelled.append(int(dispatch_id))
    return cancelled
