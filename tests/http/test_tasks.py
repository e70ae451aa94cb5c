"""Dispatch's task API on shepherd (SEMANTICS D15), through a real uvicorn on loopback.

- a Dispatch client's flow: create a task (201, Dispatch's field names) → the agent
  assignment chose sees it ASSIGNED → progress (RUNNING) → complete (COMPLETED, result);
- filters: status, assigned_agent, owner; a bad status is 422; a bad id is 400;
- priority 0-10 maps onto levels (D14/D15); fail with retry_eligible false → FAILED;
  a fail answers the state after it (PENDING when retried, as a GET then says);
- another agent reporting on the task: 403; a report on a finished task: 409;
- Dispatch's stats and agents under /api/v1/tasks/... (admin only);
- PATCH {status: CANCELLED} by the owner cancels (the worker's lease goes stale);
  another agent or a read token: 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from shepherd.runtime.http.config import TokenConfig
from shepherd.runtime.http.task_model import level_of
from shepherd.store.bounds import MAX_DEPTH
from tests.helpers import eventually
from tests.http_helpers import ADMIN, AGENT, READ, serve, standard_tokens

pytestmark = pytest.mark.anyio

NO_LIMIT = {"rate_limit": 0}


async def task(c: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    got = await c.get(f"/api/v1/tasks/{task_id}")
    assert got.status_code == 200, got.text
    out: dict[str, Any] = got.json()
    return out


def when(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


def test_priority_mapping() -> None:
    assert [level_of(p) for p in range(11)] == [
        "background", "background", "low", "low", "normal", "normal", "normal",
        "high", "high", "critical", "critical",
    ]  # fmt: skip


async def test_dispatch_client_flow(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv:
        await srv.rt.add_agent("a1", capabilities=["code", "python"])
        async with srv.client(AGENT) as a1:
            made = await a1.post(
                "/api/v1/tasks",
                json={
                    "title": "fix the bug",
                    "description": "in parser.py",
                    "required_capabilities": ["Code"],
                    "priority": 9,
                    "payload": {"file": "parser.py"},
                },
            )
            assert made.status_code == 201, made.text
            t = made.json()
            tid = t["task_id"]
            assert t["title"] == "fix the bug" and t["owner"] == "a1"
            assert t["required_capabilities"] == ["code"] and t["priority"] == 9
            assert t["payload"] == {"file": "parser.py"} and t["max_retries"] == 3
            assert t["status"] in ("PENDING", "ASSIGNED")
            d = await srv.rt.dispatch(int(tid))
            assert d.priority == "critical"
            await eventually(
                lambda: srv.rt.executors["external"].board.of_dispatch(int(tid)) is not None,
                what="the task's run on the lease board",
            )
            t = await task(a1, tid)
            assert t["status"] == "ASSIGNED" and t["assigned_agent"] == "a1"
            assigned_at = t["assigned_at"]  # when assignment chose a1
            assert assigned_at is not None and when(assigned_at) >= when(t["created_at"])
            listed = (await a1.get("/api/v1/tasks", params={"assigned_agent": "a1"})).json()
            assert [x["task_id"] for x in listed] == [tid]
            prog = await a1.post(f"/api/v1/tasks/{tid}/progress", json={"progress": 40})
            assert prog.status_code == 200, prog.text
            t = await task(a1, tid)
            assert t["status"] == "RUNNING" and t["progress"] == 40
            assert t["assigned_at"] == assigned_at
            running = (await a1.get("/api/v1/tasks", params={"status": "running"})).json()
            assert [x["task_id"] for x in running] == [tid]
            done = await a1.post(f"/api/v1/tasks/{tid}/complete", json={"result": {"pr": 12}})
            assert done.status_code == 200, done.text
            final = await srv.rt.wait(int(tid))
            assert final.status == "done"
            t = await task(a1, tid)
            assert t["status"] == "COMPLETED" and t["result"] == {"pr": 12}
            assert t["completed_at"] is not None and t["assigned_agent"] == "a1"
            assert t["assigned_at"] == assigned_at
            again = await a1.post(f"/api/v1/tasks/{tid}/complete", json={"result": 1})
            assert again.status_code == 409
            pending = (await a1.get("/api/v1/tasks", params={"status": "PENDING"})).json()
            assert pending == []
        async with srv.client(ADMIN) as admin:
            stats = (await admin.get("/api/v1/tasks/stats")).json()
            assert stats["total_completed"] == 1 and stats["total_pending"] == 0
            assert stats["avg_completion_ms"] > 0
            agents = (await admin.get("/api/v1/tasks/agents")).json()
            assert agents[0]["name"] == "a1" and agents[0]["drained"] is False
            drained = (await admin.post("/api/v1/tasks/agents/a1/drain")).json()
            assert drained["drained"] is True and drained["status"] == "draining"
        async with srv.client(READ) as reader:
            assert (await reader.get("/api/v1/tasks/stats")).status_code == 403
            assert (await reader.post("/api/v1/tasks", json={"title": "x"})).status_code == 403


async def test_fail_and_foreign_agent(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv:
        await srv.rt.add_agent("a1", capabilities=["code"])
        async with srv.client(AGENT) as a1, srv.client(ADMIN, agent="intruder") as other:
            made = await a1.post(
                "/api/v1/tasks",
                json={"title": "t", "required_capabilities": ["code"], "retry_eligible": False},
            )
            tid = made.json()["task_id"]
            await eventually(
                lambda: srv.rt.executors["external"].board.of_dispatch(int(tid)) is not None,
                what="the task's run on the lease board",
            )
            foreign = await other.post(f"/api/v1/tasks/{tid}/complete", json={"result": 1})
            assert foreign.status_code == 403
            failed = await a1.post(f"/api/v1/tasks/{tid}/fail", json={"error": "cannot"})
            assert failed.status_code == 200, failed.text
            assert (await srv.rt.wait(int(tid))).status == "dead"
            t = await task(a1, tid)
            assert t["status"] == "FAILED" and t["error"] == "cannot"
            assert t["max_retries"] == 0


async def test_a_fail_answers_the_state_after_it(db_path: str) -> None:
    """A task with retries left is PENDING after a fail (queued for its retry); a fail
    that ends it is FAILED: the answer says what a GET right after it says."""
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as a1:
        tid = (await a1.post("/api/v1/tasks", json={"title": "flaky"})).json()["task_id"]
        await eventually(
            lambda: srv.rt.executors["external"].board.of_dispatch(int(tid)) is not None,
            what="the task's run on the lease board",
        )
        failed = await a1.post(f"/api/v1/tasks/{tid}/fail", json={"error": "e1"})
        assert failed.status_code == 200, failed.text
        assert failed.json()["status"] == "PENDING"
        t = await task(a1, tid)
        assert (t["status"], t["error"], t["retry_count"]) == ("PENDING", "e1", 0)
        await eventually(
            lambda: srv.rt.executors["external"].board.of_dispatch(int(tid)) is not None,
            what="the retry on the lease board",
        )
        last = await a1.post(
            f"/api/v1/tasks/{tid}/fail", json={"error": "e2", "retry_eligible": False}
        )
        assert last.status_code == 200, last.text
        assert last.json()["status"] == "FAILED"
        t = await task(a1, tid)
        assert (t["status"], t["error"], t["retry_count"]) == ("FAILED", "e2", 1)


async def test_unassigned_task_any_agent_and_bad_input(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as a1:
        made = await a1.post("/api/v1/tasks", json={"title": "anyone", "priority": 0})
        assert made.status_code == 201
        tid = made.json()["task_id"]
        assert (await srv.rt.dispatch(int(tid))).priority == "background"
        # nobody assigned: a worker claims it through the workers' route
        got = await a1.post("/api/v1/workers/claim", json={"wait": 5})
        assert got.status_code == 200
        assert got.json()["lease"]["payload"]["title"] == "anyone"
        t = await task(a1, tid)
        assert (t["status"], t["assigned_agent"]) == ("ASSIGNED", "a1")
        claimed_at = t["assigned_at"]  # the claim's time
        assert claimed_at is not None and when(claimed_at) >= when(t["created_at"])
        deep: list[Any] = []
        for _ in range(MAX_DEPTH):
            deep = [deep]
        too_deep = await a1.post(f"/api/v1/tasks/{tid}/complete", json={"result": deep})
        assert too_deep.status_code == 422
        assert too_deep.json()["error"]["field"].startswith("result[0]")
        assert (await task(a1, tid))["status"] == "ASSIGNED"  # nothing reported
        done = await a1.post(f"/api/v1/tasks/{tid}/complete", json={"result": "ok"})
        assert done.status_code == 200
        assert (await srv.rt.wait(int(tid))).status == "done"
        # the worker's claim is on record after the run ended
        t = await task(a1, tid)
        assert (t["status"], t["assigned_agent"]) == ("COMPLETED", "a1")
        assert t["assigned_at"] == claimed_at
        mine = (await a1.get("/api/v1/tasks", params={"assigned_agent": "a1"})).json()
        assert [x["task_id"] for x in mine] == [tid]
        # a task report claims the lease of a task nobody was assigned as well
        tid2 = (await a1.post("/api/v1/tasks", json={"title": "by report"})).json()["task_id"]
        await eventually(
            lambda: srv.rt.executors["external"].board.of_dispatch(int(tid2)) is not None,
            what="the task's run on the lease board",
        )
        async with srv.client(ADMIN, agent="a2") as a2:
            done = await a2.post(f"/api/v1/tasks/{tid2}/complete", json={"result": 2})
            assert done.status_code == 200, done.text
            assert (await srv.rt.wait(int(tid2))).status == "done"
            t = await task(a2, tid2)
            assert (t["status"], t["assigned_agent"]) == ("COMPLETED", "a2")
            assert t["assigned_at"] is not None
            theirs = (await a2.get("/api/v1/tasks", params={"agent": "a2"})).json()
            assert [x["task_id"] for x in theirs] == [tid2]
        assert (await a1.get("/api/v1/tasks/abc")).status_code == 400
        assert (await a1.get("/api/v1/tasks/99999")).status_code == 404
        assert (await a1.post("/api/v1/tasks/99999/complete", json={})).status_code == 404
        bad = await a1.get("/api/v1/tasks", params={"status": "WAITING"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
        assert (await a1.post("/api/v1/tasks", json={"priority": 3})).status_code == 422
        over = await a1.post("/api/v1/tasks", json={"title": "x", "priority": 11})
        assert over.status_code == 422 and over.json()["error"]["field"] == "priority"
        caps = await a1.post("/api/v1/tasks", json={"title": "x", "required_capabilities": [""]})
        assert caps.status_code == 422


A9 = "agent-a9-secret-token"


async def test_cancel_by_patch(db_path: str) -> None:
    tokens = [*standard_tokens(), TokenConfig(name="a9", scope="agent", agent="a9", token=A9)]
    async with serve(db_path, http={"rate_limit": 0, "tokens": tokens}) as srv:
        async with srv.client(AGENT) as a1:
            tid = (await a1.post("/api/v1/tasks", json={"title": "stop me"})).json()["task_id"]
            await eventually(
                lambda: srv.rt.executors["external"].board.of_dispatch(int(tid)) is not None,
                what="the task's run on the lease board",
            )
            lease = (await a1.post("/api/v1/workers/claim", json={"wait": 5})).json()["lease"]
            bad = await a1.patch(f"/api/v1/tasks/{tid}", json={"status": "RUNNING"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
            ok = await a1.patch(f"/api/v1/tasks/{tid}", json={"status": "CANCELLED"})
            assert ok.status_code == 200, ok.text
            assert (await srv.rt.wait(int(tid))).status == "cancelled"
            assert (await task(a1, tid))["status"] == "CANCELLED"
            # the worker's lease is gone: its report is stale
            url = f"/api/v1/workers/leases/{lease['run_id']}/complete"
            assert (await a1.post(url, json={"token": lease["token"]})).status_code == 409
            assert (await a1.post(f"/api/v1/tasks/{tid}/complete", json={})).status_code == 409
            tid2 = (await a1.post("/api/v1/tasks", json={"title": "mine"})).json()["task_id"]
        url = f"/api/v1/tasks/{tid2}"
        async with srv.client(READ) as reader:
            assert (await reader.patch(url, json={"status": "CANCELLED"})).status_code == 403
        async with srv.client(A9) as a9:  # not the owner
            assert (await a9.patch(url, json={"status": "CANCELLED"})).status_code == 403
        assert (await srv.rt.dispatch(int(tid2))).status in ("queued", "running")


async def test_a_bad_task_payload_names_the_tasks_own_field(db_path: str) -> None:
    """The task's payload and metadata ride in its dispatch's payload; an error in them
    names the task's field (``payload.a...``), not the dispatch's (``payload.payload``)."""
    deep: Any = 1
    for _ in range(70):  # past store.bounds.MAX_DEPTH
        deep = {"a": deep}
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as a1:
        for key in ("payload", "metadata"):
            bad = await a1.post("/api/v1/tasks", json={"title": "x", key: deep})
            assert bad.status_code == 422, bad.text
            error = bad.json()["error"]
            assert error["field"].startswith(f"{key}.a.a"), error
            assert "nested too deeply" in error["message"]
        assert await srv.rt.dispatches() == []
