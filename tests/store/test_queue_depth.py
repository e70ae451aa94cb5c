"""``Store.queue_depth``: the active dispatches by state, priority and job, counted over
the ``dispatches_status`` index (EXPLAIN QUERY PLAN: a SEARCH, never a SCAN), leaving
the finished ones unvisited."""

from __future__ import annotations

import sqlite3

import pytest

from shepherd import Config, JobSpec, Runtime
from shepherd.store.sqlite.metrics import _SQL

pytestmark = pytest.mark.anyio


async def test_counts_by_state_priority_job_over_an_index(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path)) as rt:
        await rt.add_job(JobSpec(name="a", executor="shell", target="true"))
        await rt.add_job(JobSpec(name="b", executor="shell", target="true"))
        await rt.wait(await rt.enqueue("a"))  # done: not counted
        for _ in range(2):
            await rt.enqueue("a", priority="high", delay=3600)
        await rt.enqueue("b", delay=3600)
        assert sorted(await rt.store.queue_depth()) == [
            ("queued", 1, "a", 2),
            ("queued", 2, "b", 1),
        ]
    with sqlite3.connect(db_path) as conn:
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + _SQL))
    assert "USING INDEX dispatches_status" in plan and "SCAN" not in plan.replace("B-TREE", "")
