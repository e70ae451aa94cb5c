"""The dispatcher's window reads and its cancel wake-up read on SQLite are ranges of
partial indexes: each rank's page of ``store.sqlite.window`` searches
``dispatches_ready`` (never a scan and sort of the queued rows), and
``queries.cancel_requests`` searches ``dispatches_cancel``, with and without
``ANALYZE``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shepherd.store.sqlite import SqliteStore, queries
from shepherd.store.sqlite import window as window_sql

pytestmark = pytest.mark.anyio


def cancel_sql(conn: sqlite3.Connection) -> str:
    """The statement ``queries.cancel_requests`` really runs (the trace callback)."""
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    queries.cancel_requests(conn)
    conn.set_trace_callback(None)
    [sql] = seen
    return sql


def plans(path: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        out = []
        for sql, args in (
            (window_sql._READY[False, False], (2, 10.0, 100)),
            (window_sql._READY[True, False], (2, 10.0, 5.0, 7, 100)),
            (window_sql._READY[True, True], (2, 10.0, 5.0, 7, 3, 1, 100)),  # a lane's
            (window_sql._LATER, (2, 5.0, 7, 100)),
            (cancel_sql(conn), ()),
        ):
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
            out.append(" / ".join(str(r[3]) for r in rows))
        return out
    finally:
        conn.close()


@pytest.mark.parametrize("analyze", [False, True])
async def test_window_and_cancel_reads_search_their_partial_indexes(
    tmp_path: Path, analyze: bool
) -> None:
    path = str(tmp_path / "plan.db")
    store = await SqliteStore.open(path)
    await store.close()
    if analyze:
        conn = sqlite3.connect(path)
        conn.execute("ANALYZE")
        conn.close()
    ready, bounded, laned, later, cancels = plans(path)
    for plan in (ready, bounded, laned, later):
        assert "SEARCH dispatches USING INDEX dispatches_ready (priority=?" in plan
        assert "TEMP B-TREE" not in plan
    assert "(not_before,seq)>(?,?)" in bounded and "(not_before,seq)>(?,?)" in later
    assert "dispatches_cancel" in cancels
