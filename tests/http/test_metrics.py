"""GET /metrics through a real uvicorn, parsed with prometheus_client's parser.

- a read token is needed (401 without), none when no token is configured;
- counters and histograms move after runs: runs by outcome, dispatches by status,
  run duration, pickup latency, schedule lateness, the writer's batches and commits;
- the queue depth gauge counts queued dispatches by state, priority and job;
- the breaker, supervisor and event-drop families are present.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shepherd import JobSpec
from shepherd.runtime.http.metrics import METRICS
from tests.helpers import eventually
from tests.http_helpers import READ, Served, serve

pytestmark = pytest.mark.anyio


async def noop(payload: dict[str, Any]) -> None:
    return None


async def boom(payload: dict[str, Any]) -> None:
    raise RuntimeError("boom")


TARGETS = {"noop": noop, "boom": boom}


async def scrape(srv: Served, token: str | None = READ) -> dict[str, Any]:
    async with srv.client(token) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict[str, Any], name: str, sample: str, **labels: str) -> float:
    fam = families[name]
    for s in fam.samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


async def test_a_token_is_needed(db_path: str) -> None:
    async with serve(db_path) as srv:
        async with srv.client(None) as c:
            r = await c.get("/metrics")
            assert r.status_code == 401 and r.json()["error"]["status"] == 401
        assert "shepherd_runs" in await scrape(srv)


async def test_no_token_configured_is_open(db_path: str) -> None:
    async with serve(db_path, http={"tokens": []}) as srv:
        assert "shepherd_queue_depth" in await scrape(srv, token=None)


async def test_values_move_after_runs(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        rt = srv.rt
        await rt.add_job(JobSpec(name="noop", target="noop"))
        await rt.add_job(JobSpec(name="boom", target="boom"))
        before = await scrape(srv)
        assert value(before, "shepherd_runs", "shepherd_runs_total", outcome="ok") == 0
        for _ in range(3):
            await rt.wait(await rt.enqueue("noop", {}))
        await rt.wait(await rt.enqueue("boom", {}, max_attempts=1))
        after = await scrape(srv)
        assert value(after, "shepherd_runs", "shepherd_runs_total", outcome="ok") == 3
        assert value(after, "shepherd_runs", "shepherd_runs_total", outcome="crashed") == 1
        assert value(after, "shepherd_runs_started", "shepherd_runs_started_total") == 4
        d = "shepherd_dispatches_total"
        assert value(after, "shepherd_dispatches", d, outcome="ok", status="done") == 3
        assert value(after, "shepherd_dispatches", d, outcome="crashed", status="dead") == 1
        for h in ("shepherd_run_duration_seconds", "shepherd_pickup_latency_seconds"):
            assert value(after, h, f"{h}_count") == 4
            assert value(after, h, f"{h}_bucket", le="+Inf") == 4
        batches = "shepherd_store_batch_size"
        assert value(after, batches, f"{batches}_count") > value(
            before, batches, f"{batches}_count"
        )
        commits = "shepherd_store_commit_seconds"
        assert value(after, commits, f"{commits}_count") > 0
        assert value(after, "shepherd_breaker_state", "shepherd_breaker_state",
                     executor="python", state="closed") in (0.0, 1.0)  # fmt: skip
        assert "shepherd_supervisor_restarts" in after
        assert value(after, "shepherd_actor_starts", "shepherd_actor_starts_total",
                     actor="dispatcher") == 1  # fmt: skip
        assert value(after, "shepherd_events_dropped", "shepherd_events_dropped_total",
                     where="runtime") == 0  # fmt: skip
        documented = set(METRICS)
        for fam in after.values():
            exposed = fam.name + ("_total" if fam.type == "counter" else "")
            assert exposed in documented, exposed


async def test_queue_depth_by_state_priority_job(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        rt = srv.rt
        await rt.add_job(JobSpec(name="noop", target="noop"))
        for _ in range(2):  # due in an hour: they stay queued
            await rt.enqueue("noop", {}, priority="high", delay=3600)
        last = await rt.enqueue("noop", {}, priority="low", delay=3600)
        fams = await scrape(srv)
        q = "shepherd_queue_depth"
        assert value(fams, q, q, state="queued", priority="high", job="noop") == 2
        assert value(fams, q, q, state="queued", priority="low", job="noop") == 1
        await rt.cancel(last)
        fams = await scrape(srv)
        assert value(fams, q, q, state="queued", priority="low", job="noop") == 0


async def test_schedule_lateness_is_observed(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        await srv.rt.add_job(JobSpec(name="tick", target="noop", every=0.05))
        h = "shepherd_schedule_lateness_seconds"

        async def fired() -> bool:
            return value(await scrape(srv), h, f"{h}_count") >= 2

        await eventually(fired, what="two slots observed")
