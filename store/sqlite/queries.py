"""Read queries: synchronous functions on a sqlite3 connection, returning row models.

They run on the store's reader connection (its own thread), never on the writer's.
The row decoders, column lists and keyset page filter are engine-neutral and live in
``store.shared.queries`` (re-exported here under their old names).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from shepherd.store.models import Dispatch, JobRow, Run
from shepherd.store.shared.queries import (
    DISPATCH_COLUMNS,
    JOB_COLUMNS,
    RUN_COLUMNS,
    dispatch_from_row,
    job_from_row,
    page_filter,
    qmark,
    rank,
    run_from_row,
)

__all__ = [
    "DISPATCH_COLUMNS",
    "dispatch_by_key",
    "dispatch_from_row",
    "get_dispatch",
    "get_job",
    "get_run",
    "job_from_row",
    "jobs_by_id",
    "latest_instance",
    "list_dispatches",
    "list_jobs",
    "list_runs",
    "queued_since",
    "schedule_states",
    "stats",
]

_JOB_COLUMNS = JOB_COLUMNS
_RUN_COLUMNS = RUN_COLUMNS
_run_from_row = run_from_row


def get_job(conn: sqlite3.Connection, ref: str | int) -> JobRow | None:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ? OR name = ?", (int(ref), str(ref))
        ).fetchone()
    else:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE name = ?", (ref,)).fetchone()
    return None if row is None else job_from_row(row)


def list_jobs(conn: sqlite3.Connection) -> list[JobRow]:
    rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY name").fetchall()
    return [job_from_row(r) for r in rows]


def jobs_by_id(conn: sqlite3.Connection, ids: list[int]) -> dict[int, JobRow]:
    """The jobs among ``ids`` that exist, by id."""
    out: dict[int, JobRow] = {}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        for r in conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN ({marks})", part):
            out[r[0]] = job_from_row(r)
    return out


def schedule_states(conn: sqlite3.Connection, job_ids: list[int]) -> dict[int, str]:
    """Status of the latest ``schedule`` (or ``spawn``: a spawned one-shot's) dispatch
    of each job in ``job_ids`` that has one."""
    out: dict[int, str] = {}
    for i in range(0, len(job_ids), 500):
        part = job_ids[i : i + 500]
        marks = ",".join("?" * len(part))
        for job_id, status in conn.execute(
            "SELECT job_id, status FROM dispatches WHERE kind IN ('schedule', 'spawn')"
            f" AND slot IS NOT NULL"
            f" AND job_id IN ({marks}) ORDER BY id",
            part,
        ):
            out[int(job_id)] = str(status)
    return out


def get_dispatch(conn: sqlite3.Connection, dispatch_id: int) -> Dispatch | None:
    row = conn.execute(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches WHERE id = ?", (dispatch_id,)
    ).fetchone()
    return None if row is None else dispatch_from_row(row)


def list_dispatches(
    conn: sqlite3.Connection,
    *,
    status: str | Sequence[str] | None = None,
    job: str | None = None,
    limit: int = 100,
    before: int | None = None,
    priority: str | None = None,
    agent: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Dispatch]:
    """Newest first. ``before``: only ids below it (keyset pagination: the next page
    starts below the last id seen, never an OFFSET); ``since`` / ``until`` bound
    ``created_at`` (since <= created_at < until)."""
    clause, args = page_filter(
        qmark,
        {"job_name": job, "agent": agent, "priority": None if priority is None else rank(priority)},
        status=status, before=before, column="created_at", since=since, until=until,
    )  # fmt: skip
    rows = conn.execute(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches {clause} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    return [dispatch_from_row(r) for r in rows]


def queued_since(
    conn: sqlite3.Connection, after_seq: int, *, exclude_origin: str | None = None
) -> list[Dispatch]:
    """Queued dispatches with ``seq > after_seq`` (all of them with ``after_seq=0``).

    The dispatcher runs this on every wake-up from another process, so its cost must
    not grow with the queue: the partial index ``dispatches_queued`` (seq, queued rows
    only) serves both the range and the order. Left to itself the planner prefers the
    equality on ``dispatches_status`` and sorts every queued row in a temp B-tree;
    ``INDEXED BY`` pins the plan (and makes the statement fail, not slow down, if the
    index ever went away). The plan is asserted in tests/store/test_reload_plan.py."""
    sql = (
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches INDEXED BY dispatches_queued"
        " WHERE status = 'queued' AND seq > ?"
    )
    args: list[Any] = [after_seq]
    if exclude_origin is not None:
        sql += " AND origin != ?"
        args.append(exclude_origin)
    return [dispatch_from_row(r) for r in conn.execute(sql + " ORDER BY seq", args)]


def cancel_requests(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """The dispatcher asks on every cancel wake-up: ``INDEXED BY`` pins the partial index
    ``dispatches_cancel`` (left to itself the planner takes ``dispatches_status`` and
    visits every queued row: 0.17 s at 1,000,000 queued)."""
    return [
        (int(r[0]), str(r[1]))
        for r in conn.execute(
            "SELECT id, status FROM dispatches INDEXED BY dispatches_cancel"
            " WHERE cancel_requested = 1 AND status IN ('queued', 'running')"
        )
    ]


def get_run(conn: sqlite3.Connection, run_id: int) -> Run | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else _run_from_row(row)


def list_runs(
    conn: sqlite3.Connection,
    *,
    job: str | None = None,
    status: str | Sequence[str] | None = None,
    dispatch_id: int | None = None,
    limit: int = 100,
    before: int | None = None,
    agent: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Run]:
    """Newest first; ``before`` / ``since`` / ``until`` as ``list_dispatches``
    (the range bounds ``started_at``)."""
    clause, args = page_filter(
        qmark, {"job_name": job, "dispatch_id": dispatch_id, "agent": agent},
        status=status, before=before, column="started_at", since=since, until=until,
    )  # fmt: skip
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs {clause} ORDER BY id DESC LIMIT ?", [*args, limit]
    ).fetchall()
    return [_run_from_row(r) for r in rows]


def stats(conn: sqlite3.Connection) -> dict[str, Any]:
    by_state = dict(conn.execute("SELECT status, COUNT(*) FROM dispatches GROUP BY status"))
    runs_running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()
    jobs = conn.execute("SELECT COUNT(*), COALESCE(SUM(enabled), 0) FROM jobs").fetchone()
    return {
        "dispatches": {
            s: int(by_state.get(s, 0))
            for s in ("queued", "awaiting_approval", "running", "done", "cancelled", "dead")
        },
        "approvals_pending": int(
            conn.execute("SELECT COUNT(*) FROM approvals WHERE status = 'pending'").fetchone()[0]
        ),
        "runs_running": int(runs_running[0]),
        "jobs": int(jobs[0]),
        "jobs_enabled": int(jobs[1]),
    }


def dispatch_by_key(conn: sqlite3.Connection, job_id: int, key: str | None) -> int:
    """The dispatch of ``job_id`` bound to the producer's idempotency ``key``, whatever
    its state (0: none)."""
    row = conn.execute(
        "SELECT id FROM dispatches WHERE job_id = ? AND producer_key = ?", (job_id, key)
    ).fetchone()
    return int(row[0]) if row else 0


def latest_instance(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The most recently updated runtime's row of ``instances`` (None if there is none)."""
    row = conn.execute(
        "SELECT instance, pid, started_at, updated_at, stopped_at, status FROM instances"
        " ORDER BY updated_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return {
        "instance": row[0],
        "pid": row[1],
        "started_at": row[2],
        "updated_at": row[3],
        "stopped_at": row[4],
        "health": msgspec.json.decode(row[5]) if row[5] else {},
    }
