"""Store contract: the dashboard's bounded queries (``store.dashboard``, the engine's
module, run with ``store.read``) answer alike on every engine — keyset pages with
filters and cursors, capped counts, the queue by priority, the throughput series,
runs in flight, each job's success share."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.store.protocol import Store
from tests.store.contract.helpers import add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio


async def _q(store: Store, name: str, *args: Any, **kwargs: Any) -> Any:
    fn = getattr(store.dashboard, name)  # type: ignore[attr-defined]
    return await store.read(fn, *args, **kwargs)  # type: ignore[attr-defined]


async def _filled(store: Store) -> dict[str, Any]:
    """Jobs a and b; a: 3 runs (ok, error, running), b: 1 ok; 2 queued (high, low)."""
    a, b = await add_job(store, "a"), await add_job(store, "b")
    rows = await enqueue(store, new(a, "a"), new(a, "a"), new(a, "a"), new(b, "b"))
    d = [i for i, _ in rows]
    r1 = await claim(store, d[0], now=3.0)
    r2 = await claim(store, d[1], now=3.0)
    r3 = await claim(store, d[2], now=3.0)
    r4 = await claim(store, d[3], now=3.0)
    assert r1 and r2 and r3 and r4
    assert await finish(store, r1, d[0], now=4.0) == 0
    await finish(store, r2, d[1], outcome="error", next="dead", now=400.0)
    await finish(store, r4, d[3], now=700.0)
    [(q1, _), (q2, _)] = await enqueue(
        store, new(b, "b", priority=1), new(a, "a", priority=3), now=800.0
    )
    return {"jobs": (a, b), "d": d, "runs": (r1, r2, r3, r4), "queued": (q1, q2)}


async def test_pages_go_newest_first_and_continue_below_their_cursor(store: Store) -> None:
    f = await _filled(store)
    q1, q2 = f["queued"]
    page = await _q(store, "dispatch_page", limit=2)
    assert [x.id for x in page.rows] == [q2, q1] and page.before == q1
    rest = await _q(store, "dispatch_page", before=page.before, limit=10)
    assert [x.id for x in rest.rows] == sorted(f["d"], reverse=True) and rest.before == 0
    queued = await _q(store, "dispatch_page", status="queued", priority="high")
    assert [x.id for x in queued.rows] == [q1]
    assert (await _q(store, "dispatch_page", job_id=f["jobs"][1])).rows[0].id == q1
    late = await _q(store, "dispatch_page", since=700.0)
    assert [x.id for x in late.rows] == [q2, q1]
    r1, r2, r3, r4 = f["runs"]
    runs = await _q(store, "run_page", limit=3)
    assert [r.id for r in runs.rows] == [r4, r3, r2] and runs.before == r2
    assert all(r.stdout is None and r.stderr is None for r in runs.rows)
    errors = await _q(store, "run_page", status="error", job_id=f["jobs"][0])
    assert [r.id for r in errors.rows] == [r2]
    assert [r.id for r in await _q(store, "run_attempts", f["d"][0])] == [r1]
    assert await _q(store, "skipped_slots") == []


async def test_counts_are_capped_and_the_queue_is_read_by_priority(store: Store) -> None:
    await _filled(store)
    counts = await _q(store, "capped_counts")
    assert {k: v for k, v in counts.items() if v} == {
        "queued": 2,
        "running": 1,
        "done": 2,
        "dead": 1,
    }
    capped = await _q(store, "capped_counts", 1, 1)
    assert (capped["queued"], capped["done"], capped["dead"]) == (2, 2, 1)  # cap + 1: "more"
    by_priority, sampled = await _q(store, "queued_by_priority")
    assert {k: v for k, v in by_priority.items() if v} == {"high": 1, "low": 1}
    assert not sampled
    assert (await _q(store, "queued_by_priority", 1))[1] is True


async def test_the_overview_series_running_runs_and_success_shares(store: Store) -> None:
    f = await _filled(store)
    a, b = f["jobs"]
    series = await _q(store, "hourly_outcomes", 3600.0)
    assert len(series) == 12
    assert series[0] == {"ok": 1, "failed": 0}  # finished at 4
    assert series[1] == {"ok": 0, "failed": 1}  # 400: the error
    assert series[2] == {"ok": 1, "failed": 0}  # 700
    assert sum(s["ok"] + s["failed"] for s in series) == 3
    assert [r.id for r in await _q(store, "running_runs")] == [f["runs"][2]]
    assert await _q(store, "job_success", [a, b, 999]) == {a: 0.5, b: 1.0}
    overview = await _q(store, "overview", 3600.0)
    assert overview["series"] == series and overview["counts"]["running"] == 1
    assert [r.id for r in overview["running"]] == [f["runs"][2]]
    assert overview["by_priority"]["high"] == 1 and overview["sampled"] is False
