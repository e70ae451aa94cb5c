"""Statements on SQLite that filter a list of ids by a status read the rows by their
primary key, never a range of an index that leads with the status: without
statistics SQLite takes ``status = ?`` on such an index for ~10 rows, cheaper than the
list's lookups, and then walks the whole range, e.g. every queued dispatch of a deep
backlog on each claim (a drain of 100,000 ran at 0.75x the speed it does by id).
Reads with no id list go by their index too: the slot states of a list of jobs search
``dispatches_job_slot``, the running runs listed newest first walk ``runs_running``
(a status list of one is ``status = ?``: SQLite uses a partial index for nothing else).
Each statement is the one the store really runs (the trace callback), with and
without ``ANALYZE``."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shepherd.store.ops import MarkMessages, PurgeDead
from shepherd.store.sqlite import SqliteStore, claims, messages, queries, runs

pytestmark = pytest.mark.anyio

IDS = list(range(1, 65))  # a dispatcher pass's claims


def traced(conn: sqlite3.Connection, call: Callable[[sqlite3.Connection], object]) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        conn.execute("BEGIN")
        call(conn)
    finally:
        conn.set_trace_callback(None)
        conn.rollback()
    return [s for s in seen if s not in ("BEGIN", "ROLLBACK")]


CALLS: dict[str, tuple[str, Callable[[sqlite3.Connection], object]]] = {
    "claim's queued check": ("dispatches", lambda c: claims._queued(c, IDS)),
    "messages delivered": (
        "messages",
        lambda c: messages.mark_messages(c, MarkMessages(IDS, "delivered", time.time())),
    ),
    "dead letters purged by id": ("dispatches", lambda c: runs.purge_dead(c, PurgeDead(IDS))),
}
# reads with no id list, each by its index (not a scan of the table): which fired
# one-shot jobs have ended, by job; the running runs, newest first
BY_INDEX: dict[str, tuple[str, str, Callable[[sqlite3.Connection], object]]] = {
    "slot states of jobs": (
        "dispatches",
        "dispatches_job_slot (job_id=?)",
        lambda c: queries.schedule_states(c, IDS),
    ),
    # the running runs, newest first (a dashboard's view): the partial index of the
    # running ones, not every run from the newest down
    "running runs listed": (
        "runs",
        "runs_running",
        lambda c: queries.list_runs(c, status="running", limit=50),
    ),
    "running runs listed, a status list of one": (
        "runs",
        "runs_running",
        lambda c: queries.list_runs(c, status=["running"], limit=50),
    ),
}


async def plans(
    tmp_path: Path, analyze: bool, table: str, call: Callable[[sqlite3.Connection], object]
) -> list[tuple[str, str]]:
    """Each statement ``call`` runs on ``table`` in a fresh store's file, with its plan."""
    path = str(tmp_path / "plan.db")
    store = await SqliteStore.open(path)
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if analyze:
            conn.execute("ANALYZE")
        statements = [s for s in traced(conn, call) if f" {table} " in f" {s} "]
        return [
            (sql, " / ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql)))
            for sql in statements
        ]
    finally:
        conn.close()


@pytest.mark.parametrize("analyze", [False, True])
@pytest.mark.parametrize("name", sorted(CALLS))
async def test_an_id_list_with_a_status_is_read_by_primary_key(
    tmp_path: Path, analyze: bool, name: str
) -> None:
    table, call = CALLS[name]
    found = await plans(tmp_path, analyze, table, call)
    assert found, f"{name}: no statement on {table} ran"
    for sql, plan in found:
        if sql.startswith("SELECT max(COALESCE((SELECT MAX("):  # next_id: the top of an index
            assert f"SCAN {table}" not in plan, (name, sql, plan)
            continue
        assert f"SEARCH {table} USING INTEGER PRIMARY KEY" in plan, (name, sql, plan)


@pytest.mark.parametrize("analyze", [False, True])
@pytest.mark.parametrize("name", sorted(BY_INDEX))
async def test_a_read_without_an_id_list_uses_its_index(
    tmp_path: Path, analyze: bool, name: str
) -> None:
    table, index, call = BY_INDEX[name]
    [(sql, plan)] = await plans(tmp_path, analyze, table, call)
    assert f"USING INDEX {index}" in plan, (name, sql, plan)
