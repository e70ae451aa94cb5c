"""Engine-neutral pieces of the dashboard's read queries, shared by
``store.sqlite.dashboard`` and ``store.postgres.dashboard``: the page model, the window
and caps, the column lists, the filters of a page, how a page ends, and how finished
runs fall into the overview's time buckets. The statements themselves are each
engine's (SQLite names its indexes; PostgreSQL's planner picks them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from shepherd.store.models import priority_rank
from shepherd.store.shared.queries import RUN_COLUMNS, Mark

__all__ = [
    "ENDED",
    "FAILED",
    "RUN_LIST_COLUMNS",
    "WINDOW",
    "Page",
    "Where",
    "bucket_outcomes",
    "dispatch_filters",
    "end_page",
    "page_sql",
    "run_filters",
]

WINDOW = 50_000  # ids a filtered page may scan below its cursor
ENDED = ("done", "cancelled", "dead")
FAILED = ("error", "timeout", "crashed")  # what the overview counts as failed
# the list pages leave the (possibly large) output columns out
RUN_LIST_COLUMNS = RUN_COLUMNS.replace("stdout, stderr,", "NULL, NULL,")


class Page(msgspec.Struct, kw_only=True):
    """One page of rows, and ``before``: the id to continue from (0: no older rows)."""

    rows: list[Any]
    before: int = 0
    scanned_to: int = 0  # the lowest id looked at (a window ended the page early)


Where = list[tuple[str, Any]]  # ("column <op>", value): one condition each


def _filters(time_column: str, *, since: float | None, until: float | None, **equal: Any) -> Where:
    """``column =`` for each given ``equal`` value, and the time range on
    ``time_column``; values that are None are left out."""
    where = [(f"{col} =", value) for col, value in equal.items() if value is not None]
    if since is not None:
        where.append((f"{time_column} >=", float(since)))
    if until is not None:
        where.append((f"{time_column} <", float(until)))
    return where


def dispatch_filters(
    *,
    job_id: int | None,
    status: str | None,
    priority: str | None,
    agent: str | None,
    since: float | None,
    until: float | None,
) -> Where:
    """The conditions of a dispatch page (``priority``: its name; stored as its rank)."""
    rank = priority_rank(priority) if priority is not None else None
    return _filters(
        "created_at", status=status, job_id=job_id, priority=rank, agent=agent,
        since=since, until=until,
    )  # fmt: skip


def run_filters(
    *,
    job_id: int | None,
    status: str | None,
    agent: str | None,
    since: float | None,
    until: float | None,
) -> Where:
    """The conditions of a run page (the time range is on ``started_at``)."""
    return _filters(
        "started_at", status=status, job_id=job_id, agent=agent, since=since, until=until
    )


def page_sql(
    mark: Mark, table: str, columns: str, where: Where, top: int, limit: int
) -> tuple[str, list[Any], int]:
    """The statement of one keyset page below id ``top`` (newest first, one row more
    than ``limit`` to tell whether older rows remain), its values and its floor: a
    filtered page looks at most ``WINDOW`` ids below ``top``."""
    floor = max(0, top - WINDOW) if where else 0
    conds = [("id <", top), ("id >=", floor), *where]
    args = [v for _, v in conds] + [limit + 1]
    clauses = [f"{c} {mark(i)}" for i, (c, _) in enumerate(conds, start=1)]
    sql = (
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(clauses)}"
        f" ORDER BY id DESC LIMIT {mark(len(args))}"
    )
    return sql, args, floor


def end_page(rows: list[Any], limit: int, floor: int) -> tuple[list[Any], int, int]:
    """(rows, before, scanned_to) of a page read with ``page_sql``."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, int(rows[-1][0]), 0
    # fewer than a page: older rows may remain below the window
    return rows, (floor if floor > 0 else 0), floor


def bucket_outcomes(counts: Iterable[tuple[Any, Any, Any]], buckets: int) -> list[dict[str, int]]:
    """``{"ok": n, "failed": n}`` per bucket from (bucket, status, count) rows."""
    out = [{"ok": 0, "failed": 0} for _ in range(buckets)]
    for slot, status, n in counts:
        i = min(max(int(slot), 0), buckets - 1)
        if status == "ok":
            out[i]["ok"] += int(n)
        elif status in FAILED:
            out[i]["failed"] += int(n)
    return out
