"""The dashboard's read queries on PostgreSQL (mirrors ``store.sqlite.dashboard``: the
same functions, the same results; the shared pieces are ``store.shared.dashboard``).

Each costs a bounded amount of work whatever the size of the tables, as on SQLite:
lists are keyset pages in ``id`` order (newest first, ``before=<id>``, a filtered page
looks at most ``WINDOW`` ids below its cursor: a primary-key range); counts are capped
(``COUNT`` over a ``LIMIT``-ed subquery); the throughput series reads the partial
index ``runs_finished``; each job's success share is one ``LATERAL`` probe of
``runs_job`` per job, in one statement.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shepherd.store.models import DISPATCH_STATES, PRIORITIES, Dispatch, Run
from shepherd.store.shared.dashboard import (
    ENDED,
    RUN_LIST_COLUMNS,
    WINDOW,
    Page,
    Where,
    bucket_outcomes,
    dispatch_filters,
    end_page,
    page_sql,
    run_filters,
)
from shepherd.store.shared.queries import (
    DISPATCH_COLUMNS,
    RUN_COLUMNS,
    dispatch_from_row,
    numbered,
    run_from_row,
)

__all__ = [
    "ENDED",
    "RUN_COLUMNS",
    "WINDOW",
    "Page",
    "capped_counts",
    "dispatch_page",
    "hourly_outcomes",
    "job_success",
    "overview",
    "queued_by_priority",
    "run_attempts",
    "run_page",
    "running_runs",
    "skipped_slots",
]


async def _page(
    conn: asyncpg.Connection,
    table: str,
    columns: str,
    where: Where,
    before: int | None,
    limit: int,
) -> tuple[list[Any], int, int]:
    if before:
        top = int(before)
    else:
        top = int(await conn.fetchval(f"SELECT COALESCE(MAX(id), 0) FROM {table}")) + 1
    sql, args, floor = page_sql(numbered, table, columns, where, top, limit)
    return end_page(list(await conn.fetch(sql, *args)), limit, floor)


async def dispatch_page(
    conn: asyncpg.Connection,
    *,
    job_id: int | None = None,
    status: str | None = None,
    priority: str | None = None,
    agent: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Page:
    where = dispatch_filters(
        job_id=job_id, status=status, priority=priority, agent=agent, since=since, until=until
    )
    rows, nxt, scanned = await _page(conn, "dispatches", DISPATCH_COLUMNS, where, before, limit)
    out: list[Dispatch] = [dispatch_from_row(r) for r in rows]
    return Page(rows=out, before=nxt, scanned_to=scanned)


async def run_page(
    conn: asyncpg.Connection,
    *,
    job_id: int | None = None,
    status: str | None = None,
    agent: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Page:
    where = run_filters(job_id=job_id, status=status, agent=agent, since=since, until=until)
    rows, nxt, scanned = await _page(conn, "runs", RUN_LIST_COLUMNS, where, before, limit)
    out: list[Run] = [run_from_row(r) for r in rows]
    return Page(rows=out, before=nxt, scanned_to=scanned)


async def run_attempts(conn: asyncpg.Connection, dispatch_id: int) -> list[Run]:
    """Every run of one dispatch, oldest first (``runs_dispatch``), without output."""
    rows = await conn.fetch(
        f"SELECT {RUN_LIST_COLUMNS} FROM runs WHERE dispatch_id = $1 ORDER BY id LIMIT 200",
        int(dispatch_id),
    )
    return [run_from_row(r) for r in rows]


async def skipped_slots(conn: asyncpg.Connection, *, limit: int = 50) -> list[Run]:
    """The latest slots recorded ``skipped`` (missed, backoff, overlap...), newest
    first, among the last ``WINDOW`` runs."""
    page = await run_page(conn, status="skipped", limit=limit)
    return page.rows  # type: ignore[no-any-return]


async def capped_counts(
    conn: asyncpg.Connection, cap: int = 100_000, ended_cap: int = 10_000
) -> dict[str, int]:
    """Dispatches per state, each counted over at most ``cap`` + 1 index entries
    (``dispatches_status``; ``ended_cap`` for done, cancelled and dead, which only
    grow); a value above its cap means "more than the cap"."""
    states = list(DISPATCH_STATES)
    limits = [(ended_cap if s in ENDED else cap) + 1 for s in states]
    rows = await conn.fetch(
        "SELECT s.state, (SELECT COUNT(*) FROM (SELECT 1 FROM dispatches"
        " WHERE status = s.state LIMIT s.cap) AS t)"
        " FROM unnest($1::text[], $2::bigint[]) AS s(state, cap)",
        states,
        limits,
    )
    got = {str(r[0]): int(r[1]) for r in rows}
    return {s: got.get(s, 0) for s in states}


async def queued_by_priority(
    conn: asyncpg.Connection, cap: int = 100_000
) -> tuple[dict[str, int], bool]:
    """Queued dispatches per priority among the first ``cap`` in the queue (one pass
    over ``dispatches_queued``), and whether the queue holds more than that."""
    out = dict.fromkeys(PRIORITIES, 0)
    seen = 0
    for rank, n in await conn.fetch(
        "SELECT priority, COUNT(*) FROM (SELECT priority FROM dispatches"
        " WHERE status = 'queued' LIMIT $1) AS t GROUP BY priority",
        cap + 1,
    ):
        out[PRIORITIES[int(rank)]] = int(n)
        seen += int(n)
    return out, seen > cap


async def hourly_outcomes(
    conn: asyncpg.Connection, now: float, *, buckets: int = 12, width: float = 300.0
) -> list[dict[str, int]]:
    """Runs finished in each of the last ``buckets`` intervals of ``width`` seconds
    (oldest first): ``{"ok": n, "failed": n}`` (failed: error, timeout, crashed)."""
    start = float(now) - buckets * float(width)
    rows = await conn.fetch(
        "SELECT floor((finished_at - $1) / $2)::bigint, status, COUNT(*) FROM runs"
        " WHERE finished_at >= $1 AND finished_at IS NOT NULL GROUP BY 1, 2",
        start,
        float(width),
    )
    return bucket_outcomes(((r[0], r[1], r[2]) for r in rows), buckets)


async def running_runs(conn: asyncpg.Connection, *, limit: int = 50) -> list[Run]:
    """Runs in flight, newest first (the partial index ``runs_running``)."""
    rows = await conn.fetch(
        f"SELECT {RUN_LIST_COLUMNS} FROM runs WHERE status = 'running' ORDER BY id DESC LIMIT $1",
        limit,
    )
    return [run_from_row(r) for r in rows]


async def job_success(
    conn: asyncpg.Connection, job_ids: list[int], *, last: int = 50
) -> dict[int, float]:
    """Each job's share of ``ok`` among its latest ``last`` ended runs (``runs_job``);
    jobs without ended runs are left out."""
    ids = [int(j) for j in job_ids[:500]]
    if not ids:
        return {}
    tally: dict[int, list[int]] = {}
    for job_id, ok, n in await conn.fetch(
        "SELECT j.id, COUNT(*) FILTER (WHERE r.status = 'ok'), COUNT(*)"
        " FROM unnest($1::bigint[]) AS j(id) CROSS JOIN LATERAL (SELECT status FROM runs"
        " WHERE job_id = j.id AND status NOT IN ('running', 'skipped')"
        " ORDER BY id DESC LIMIT $2) AS r GROUP BY j.id",
        ids,
        last,
    ):
        tally[int(job_id)] = [int(ok), int(n)]
    return {j: tally[j][0] / tally[j][1] for j in ids if j in tally}


async def overview(conn: asyncpg.Connection, now: float) -> dict[str, Any]:
    """The overview's aggregates in one trip to a pooled connection."""
    by_priority, sampled = await queued_by_priority(conn)
    return {
        "counts": await capped_counts(conn),
        "by_priority": by_priority,
        "sampled": sampled,
        "series": await hourly_outcomes(conn, now),
        "running": await running_runs(conn, limit=20),
    }
