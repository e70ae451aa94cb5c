"""/readyz is honest: 503 while the dispatcher has not recovered, and while the store
cannot commit (another connection holds the write lock: the writer's commits fail and
the probe's own write round trip fails too); 200 again once it can."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from shepherd import JobSpec
from shepherd.store.errors import DiskFull, StoreError
from tests.http_helpers import serve

pytestmark = pytest.mark.anyio


async def test_ready_then_not_while_the_store_cannot_commit(db_path: str) -> None:
    async with serve(db_path, busy_timeout=0.2) as srv, httpx.AsyncClient(base_url=srv.url) as c:
        await srv.rt.add_job(JobSpec(name="a", executor="shell", target="true"))
        ok = await c.get("/readyz")
        assert ok.status_code == 200
        assert ok.json() == {"status": "ready", "checks": {"recovery": "ok", "store": "ok"}}
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
            with pytest.raises(StoreError):
                await srv.rt.enqueue("a")
            bad = await c.get("/readyz")
            assert bad.status_code == 503
            body = bad.json()
            assert body["status"] == "not-ready" and body["checks"]["recovery"] == "ok"
            assert body["checks"]["store"].startswith("error:")
            assert "locked" in body["checks"]["store"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        still = await c.get("/readyz")  # nothing committed since the failure
        assert still.status_code == 503 and "locked" in still.json()["checks"]["store"]
        await srv.rt.enqueue("a")  # a real commit succeeds
        again = await c.get("/readyz")
        assert again.status_code == 200, again.text
        assert (await c.get("/healthz")).status_code == 200  # alive throughout


async def test_commits_failing_are_not_answered_for_by_the_probes_empty_write(
    db_path: str,
) -> None:
    """A full disk fails every commit that needs a page; the probe's empty transaction
    still commits. While the writer's commits fail, /readyz says so, whatever the probe
    would do."""
    async with serve(db_path) as srv, httpx.AsyncClient(base_url=srv.url) as c:
        writer = srv.rt._actors["store"]
        assert (await c.get("/readyz")).status_code == 200
        writer._failed(DiskFull("database or disk is full"))  # as a failed commit records
        for _ in range(2):  # not cleared by probing
            bad = await c.get("/readyz")
            assert bad.status_code == 503 and "disk is full" in bad.json()["checks"]["store"]
        await srv.rt.add_job(JobSpec(name="a", executor="shell", target="true"))  # commits
        assert (await c.get("/readyz")).status_code == 200


async def test_not_ready_until_recovery_is_done(db_path: str) -> None:
    async with serve(db_path) as srv, httpx.AsyncClient(base_url=srv.url) as c:
        dispatcher = srv.rt._actors["dispatcher"]
        assert dispatcher.ready
        dispatcher.ready = False  # as between a restart and the end of its recovery
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["recovery"] == "pending"
        dispatcher.ready = True
        assert (await c.get("/readyz")).status_code == 200
