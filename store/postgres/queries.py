"""Read queries of the core tables (jobs, dispatches, runs) on an asyncpg connection,
returning row models: the PostgreSQL side of ``store.sqlite.queries``, with the same
arguments, rows and order. The decoders, column lists and keyset page filter are the
engine-neutral ones of ``store.shared.queries``.

They run on a pooled connection (``PgStore.read``), never on the writer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from shepherd.store.models import Dispatch, JobRow, Run
from shepherd.store.shared.queries import (
    DISPATCH_COLUMNS,
    JOB_COLUMNS,
    RUN_COLUMNS,
    dispatch_from_row,
    job_from_row,
    numbered,
    page_filter,
    rank,
    run_from_row,
)

__all__ = [
    "cancel_requests",
    "dispatch_by_key",
    "get_dispatch",
    "get_job",
    "get_run",
    "jobs_by_id",
    "latest_instance",
    "list_dispatches",
    "list_jobs",
    "list_runs",
    "queued_since",
    "schedule_states",
    "stats",
]


async def get_job(conn: asyncpg.Connection, ref: str | int) -> JobRow | None:
    """The job named ``ref``, or (a number) whose id or name it is."""
    if isinstance(ref, int) or ref.isdigit():
        row = await conn.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 OR name = $2", int(ref), str(ref)
        )
    else:
        row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1", ref)
    return None if row is None else job_from_row(row)


async def list_jobs(conn: asyncpg.Connection) -> list[JobRow]:
    rows = await conn.fetch(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY name")
    return [job_from_row(r) for r in rows]


async def jobs_by_id(conn: asyncpg.Connection, ids: list[int]) -> dict[int, JobRow]:
    """The jobs among ``ids`` that exist, by id."""
    rows = await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1::bigint[])", [int(i) for i in ids]
    )
    return {int(r[0]): job_from_row(r) for r in rows}


async def schedule_states(conn: asyncpg.Connection, job_ids: list[int]) -> dict[int, str]:
    """Status of the latest ``schedule`` (or ``spawn``: a spawned one-shot's) dispatch
    of each job in ``job_ids`` that has one."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (job_id) job_id, status FROM dispatches"
        " WHERE kind IN ('schedule', 'spawn') AND slot IS NOT NULL"
        " AND job_id = ANY($1::bigint[]) ORDER BY job_id, id DESC",
        [int(i) for i in job_ids],
    )
    return {int(job_id): str(status) for job_id, status in rows}


async def get_dispatch(conn: asyncpg.Connection, dispatch_id: int) -> Dispatch | None:
    row = await conn.fetchrow(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches WHERE id = $1", int(dispatch_id)
    )
    return None if row is None else dispatch_from_row(row)


async def list_dispatches(
    conn: asyncpg.Connection,
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
        numbered,
        {"job_name": job, "agent": agent, "priority": None if priority is None else rank(priority)},
        status=status, before=before, column="created_at",
        since=_float(since), until=_float(until),
    )  # fmt: skip
    rows = await conn.fetch(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches {clause}"
        f" ORDER BY id DESC LIMIT {numbered(len(args) + 1)}",
        *args,
        int(limit),
    )
    return [dispatch_from_row(r) for r in rows]


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


async def queued_since(
    conn: asyncpg.Connection, after_seq: int, *, exclude_origin: str | None = None
) -> list[Dispatch]:
    """Queued dispatches with ``seq > after_seq`` (all of them with ``after_seq=0``), in
    seq order: a range of the partial index ``dispatches_queued`` (queued rows only), so
    its cost follows the answer, not the table."""
    sql = f"SELECT {DISPATCH_COLUMNS} FROM dispatches WHERE status = 'queued' AND seq > $1"
    args: list[Any] = [int(after_seq)]
    if exclude_origin is not None:
        sql += " AND origin != $2"
        args.append(exclude_origin)
    return [dispatch_from_row(r) for r in await conn.fetch(sql + " ORDER BY seq", *args)]


async def cancel_requests(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        "SELECT id, status FROM dispatches"
        " WHERE cancel_requested = 1 AND status IN ('queued', 'running')"
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def get_run(conn: asyncpg.Connection, run_id: int) -> Run | None:
    row = await conn.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1", int(run_id))
    return None if row is None else run_from_row(row)


async def list_runs(
    conn: asyncpg.Connection,
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
        numbered, {"job_name": job, "dispatch_id": dispatch_id, "agent": agent},
        status=status, before=before, column="started_at",
        since=_float(since), until=_float(until),
    )  # fmt: skip
    rows = await conn.fetch(
        f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY id DESC LIMIT {numbered(len(args) + 1)}",
        *args,
        int(limit),
    )
    return [run_from_row(r) for r in rows]


async def stats(conn: asyncpg.Connection) -> dict[str, Any]:
    by_state = {
        str(s): int(n)
        for s, n in await conn.fetch("SELECT status, COUNT(*) FROM dispatches GROUP BY status")
    }
    runs_running = await conn.fetchval("SELECT COUNT(*) FROM runs WHERE status = 'running'")
    jobs = await conn.fetchrow("SELECT COUNT(*), COALESCE(SUM(enabled), 0) FROM jobs")
    pending = await conn.fetchval("SELECT COUNT(*) FROM approvals WHERE status = 'pending'")
    assert jobs is not None
    return {
        "dispatches": {
            s: by_state.get(s, 0)
            for s in ("queued", "awaiting_approval", "running", "done", "cancelled", "dead")
        },
        "approvals_pending": int(pending),
        "runs_running": int(runs_running),
        "jobs": int(jobs[0]),
        "jobs_enabled": int(jobs[1]),
    }


async def dispatch_by_key(conn: asyncpg.Connection, job_id: int, key: str | None) -> int:
    """The dispatch of ``job_id`` bound to the producer's idempotency ``key``, whatever
    its state (0: none)."""
    found = await conn.fetchval(
        "SELECT id FROM dispatches WHERE job_id = $1 AND producer_key = $2", int(job_id), key
    )
    return int(found) if found is not None else 0


async def latest_instance(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The most recently updated runtime's row of ``instances`` (None if there is none)."""
    row = await conn.fetchrow(
        "SELECT instance, pid, started_at, updated_at, stopped_at, status FROM instances"
        " ORDER BY updated_at DESC LIMIT 1"
    )
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
