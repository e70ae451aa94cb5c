"""The dashboard's read queries: bounded, indexed, keyset-paginated.

Every function runs on the store's reader connection (``SqliteStore.read``) and costs
a bounded amount of work whatever the size of the tables:

- lists are pages in ``id`` order, newest first, continued with ``before=<id>``
  (keyset, never OFFSET); a filtered page scans at most ``WINDOW`` ids below its
  cursor (a rowid range), so a rare filter answers an emptier page with a cursor to
  continue from instead of walking the whole table;
- counts are capped (``COUNT`` over at most ``cap`` index entries): "100000+" is
  shown where an exact figure would cost a scan of a million rows;
- the last hour's throughput reads ``runs_finished`` (finished_at) only.

tests/store/test_dashboard_plan.py asserts with EXPLAIN QUERY PLAN that none of these
statements scans a table.
"""

from __future__ import annotations

import sqlite3
from typing import Any

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
from shepherd.store.shared.queries import DISPATCH_COLUMNS, RUN_COLUMNS, dispatch_from_row, qmark
from shepherd.store.shared.queries import run_from_row as _run_from_row

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

_RUN_LIST_COLUMNS = RUN_LIST_COLUMNS


def _top(conn: sqlite3.Connection, table: str) -> int:
    row = conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()  # the rowid's last entry
    return int(row[0] or 0)


def _page(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    where: Where,
    before: int | None,
    limit: int,
) -> tuple[list[tuple[Any, ...]], int, int]:
    top = before if before else _top(conn, table) + 1
    sql, args, floor = page_sql(qmark, table, columns, where, top, limit)
    return end_page(conn.execute(sql, args).fetchall(), limit, floor)


def dispatch_page(
    conn: sqlite3.Connection,
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
    rows, nxt, scanned = _page(conn, "dispatches", DISPATCH_COLUMNS, where, before, limit)
    out: list[Dispatch] = [dispatch_from_row(r) for r in rows]
    return Page(rows=out, before=nxt, scanned_to=scanned)


def run_page(
    conn: sqlite3.Connection,
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
    rows, nxt, scanned = _page(conn, "runs", _RUN_LIST_COLUMNS, where, before, limit)
    out: list[Run] = [_run_from_row(r) for r in rows]
    return Page(rows=out, before=nxt, scanned_to=scanned)


def run_attempts(conn: sqlite3.Connection, dispatch_id: int) -> list[Run]:
    """Every run of one dispatch, oldest first (``runs_dispatch``), without output."""
    rows = conn.execute(
        f"SELECT {_RUN_LIST_COLUMNS} FROM runs WHERE dispatch_id = ? ORDER BY id LIMIT 200",
        (dispatch_id,),
    ).fetchall()
    return [_run_from_row(r) for r in rows]


def skipped_slots(conn: sqlite3.Connection, *, limit: int = 50) -> list[Run]:
    """The latest slots recorded ``skipped`` (missed, backoff, overlap...), newest
    first, among the last ``WINDOW`` runs."""
    return run_page(conn, status="skipped", limit=limit).rows  # type: ignore[no-any-return]


def capped_counts(
    conn: sqlite3.Connection, cap: int = 100_000, ended_cap: int = 10_000
) -> dict[str, int]:
    """Dispatches per state, each counted over at most ``cap`` + 1 index entries
    (``dispatches_status``; ``ended_cap`` for done, cancelled and dead, which only
    grow); a value above its cap means "more than the cap"."""
    out: dict[str, int] = {}
    for state in DISPATCH_STATES:
        limit = ended_cap if state in ENDED else cap
        row = conn.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM dispatches WHERE status = ? LIMIT ?)",
            (state, limit + 1),
        ).fetchone()
        out[state] = int(row[0])
    return out


def queued_by_priority(conn: sqlite3.Connection, cap: int = 100_000) -> tuple[dict[str, int], bool]:
    """Queued dispatches per priority among the first ``cap`` in the queue (one pass
    over ``dispatches_queued``), and whether the queue holds more than that."""
    out = dict.fromkeys(PRIORITIES, 0)
    seen = 0
    for rank, n in conn.execute(
        "SELECT priority, COUNT(*) FROM (SELECT priority FROM dispatches"
        " INDEXED BY dispatches_queued WHERE status = 'queued' LIMIT ?) GROUP BY priority",
        (cap + 1,),
    ):
        out[PRIORITIES[int(rank)]] = int(n)
        seen += int(n)
    return out, seen > cap


def hourly_outcomes(
    conn: sqlite3.Connection, now: float, *, buckets: int = 12, width: float = 300.0
) -> list[dict[str, int]]:
    """Runs finished in each of the last ``buckets`` intervals of ``width`` seconds
    (oldest first): ``{"ok": n, "failed": n}`` (failed: error, timeout, crashed)."""
    start = now - buckets * width
    rows = conn.execute(
        "SELECT CAST((finished_at - ?) / ? AS INTEGER), status, COUNT(*) FROM runs"
        " INDEXED BY runs_finished WHERE finished_at >= ? AND finished_at IS NOT NULL"
        " GROUP BY 1, 2",
        (start, width, start),
    )
    return bucket_outcomes(rows, buckets)


def running_runs(conn: sqlite3.Connection, *, limit: int = 50) -> list[Run]:
    """Runs in flight, newest first (the partial index ``runs_running``)."""
    rows = conn.execute(
        f"SELECT {_RUN_LIST_COLUMNS} FROM runs INDEXED BY runs_running"
        " WHERE status = 'running' ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_run_from_row(r) for r in rows]


def job_success(
    conn: sqlite3.Connection, job_ids: list[int], *, last: int = 50
) -> dict[int, float]:
    """Each job's share of ``ok`` among its latest ``last`` ended runs (``runs_job``);
    jobs without ended runs are left out."""
    out: dict[int, float] = {}
    for job_id in job_ids[:500]:
        rows = conn.execute(
            "SELECT status FROM runs WHERE job_id = ? AND status NOT IN ('running', 'skipped')"
            " ORDER BY id DESC LIMIT ?",
            (job_id, last),
        ).fetchall()
        if rows:
            out[job_id] = sum(1 for (s,) in rows if s == "ok") / len(rows)
    return out


def overview(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    """The overview's aggregates in one trip to the reader thread."""
    by_priority, sampled = queued_by_priority(conn)
    return {
        "counts": capped_counts(conn),
        "by_priority": by_priority,
        "sampled": sampled,
        "series": hourly_outcomes(conn, now),
        "running": running_runs(conn, limit=20),
    }
