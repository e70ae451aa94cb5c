"""The dashboard's queries (store/sqlite/dashboard.py) use indexes: every statement
they run, with the arguments they run it with, is explained (EXPLAIN QUERY PLAN) on a
filled database, and none reads the runs or dispatches table whole (an index walked end to end only
under a LIMIT)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.ui_fixture import fill
from shepherd.store.sqlite import dashboard as q

BIG = ("runs", "dispatches")


class Recorder:
    """A connection that remembers every statement executed through it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        self.seen.append((sql, tuple(args)))
        return self.conn.execute(sql, args)


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    db = Path(tmp_path_factory.mktemp("plan")) / "ui.db"
    fill(db, runs=5_000, queued=500)
    return sqlite3.connect(db)


NOW = time.time()
CALLS: dict[str, Callable[[Any], Any]] = {
    "overview": lambda c: q.overview(c, NOW),
    "counts": q.capped_counts,
    "by_priority": q.queued_by_priority,
    "hourly": lambda c: q.hourly_outcomes(c, NOW),
    "running": q.running_runs,
    "job_success": lambda c: q.job_success(c, [1, 2, 3]),
    "dispatches": q.dispatch_page,
    "dispatches_filtered": lambda c: q.dispatch_page(
        c, status="queued", job_id=2, priority="high", agent="a", since=NOW - 3600, before=400
    ),
    "dispatches_state": lambda c: q.dispatch_page(c, status="dead"),
    "runs": q.run_page,
    "runs_filtered": lambda c: q.run_page(
        c, status="error", job_id=3, agent="agent1", since=NOW - 86400, until=NOW, before=4000
    ),
    "runs_by_job": lambda c: q.run_page(c, job_id=4),
    "attempts": lambda c: q.run_attempts(c, 10),
    "skipped": q.skipped_slots,
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_no_dashboard_query_scans_a_big_table(conn: sqlite3.Connection, name: str) -> None:
    rec = Recorder(conn)
    CALLS[name](rec)
    assert rec.seen, "the call ran no statement"
    for sql, args in rec.seen:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
        touches = [p for p in plan if re.match(rf"(SCAN|SEARCH) ({'|'.join(BIG)})\b", p)]
        assert touches, (name, plan)
        for step in touches:
            # SEARCH: a seek through an index or the rowid (bare: MAX(id)'s one seek);
            # SCAN: only an index walked under a LIMIT (a capped count), never the table
            if step.startswith("SCAN"):
                assert " USING " in step, f"{name}: full scan\n{sql}\n{plan}"
                assert "LIMIT" in sql, f"{name}: unbounded index scan\n{sql}\n{plan}"


def test_a_filtered_page_is_bounded_and_continues(conn: sqlite3.Connection) -> None:
    """A filter no row matches answers an empty page with a cursor below its window,
    and following the cursors reaches the end (keyset, no OFFSET)."""
    page = q.run_page(conn, agent="nobody", limit=10)
    assert page.rows == []
    top = conn.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    assert page.before == max(0, top + 1 - q.WINDOW)
    seen = set()
    before = None
    while True:
        p = q.run_page(conn, status="error", limit=100, before=before)
        ids = [r.id for r in p.rows]
        assert ids == sorted(ids, reverse=True) and not seen & set(ids)
        seen |= set(ids)
        if not p.before:
            break
        before = p.before
    want = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'error'").fetchone()[0]
    assert len(seen) == want
