"""The REST resources through a real uvicorn on loopback (tests/http_helpers.serve).

- jobs: create (201; 409 when it exists; a field refused: 422 naming it, nothing
  stored), show, replace, patch, enable / disable, run now, next fires, remove;
- dispatches: enqueue, a batch whose bad items do not take the good ones down, lookup,
  filters, keyset pages that cover every row once, cancel (409 once ended);
- runs with their attempts; dead letters listed, retried, purged;
- approvals approved / rejected (409 the second time), agents, messages, pauses,
  status and stats.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shepherd import Discard, RunContext
from tests.http_helpers import AGENT, READ, Served, serve

pytestmark = pytest.mark.anyio


async def ok(ctx: RunContext) -> dict[str, Any]:
    return {"echo": ctx.payload}


async def dies(payload: dict[str, Any]) -> None:
    raise Discard("no")


def register(srv: Served) -> None:
    srv.rt.register("ok", ok)
    srv.rt.register("dies", dies)


async def _json(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


async def test_jobs_lifecycle(db_path: str) -> None:
    async with serve(db_path) as srv, srv.client() as c:
        register(srv)
        made = await _json(
            await c.post("/api/v1/jobs", json={"name": "j", "target": "ok", "timeout": "30s"}), 201
        )
        assert made["spec"]["timeout"] == 30.0
        again = await c.post("/api/v1/jobs", json={"name": "j", "target": "ok"})
        assert again.status_code == 409
        bad = await c.post(
            "/api/v1/jobs", json={"name": "k", "target": "ok", "retry": {"max_attempts": 0}}
        )
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "retry.max_attempts"
        unknown = await c.post("/api/v1/jobs", json={"name": "k", "target": "ok", "cronn": "x"})
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "cronn"
        no_exec = await c.post("/api/v1/jobs", json={"name": "k", "executor": "nope"})
        assert no_exec.status_code == 422 and no_exec.json()["error"]["field"] == "executor"
        for body, field in (
            ({"name": "nul", "executor": "shell", "target": "echo \u0000 hi"}, "target"),
            ({"name": "nul", "executor": "shell", "target": "pwd",
              "options": {"cwd": "/tmp\u0000"}}, "options.cwd"),
        ):  # fmt: skip
            nul = await c.post("/api/v1/jobs", json=body)
            assert nul.status_code == 422 and nul.json()["error"]["field"] == field, nul.text
            assert "NUL" in nul.json()["error"]["message"]
        assert [j.name for j in await srv.rt.list_jobs()] == ["j"]  # nothing else stored

        got = await _json(await c.get("/api/v1/jobs/j"))
        assert got["spec"]["target"] == "ok"
        assert (await c.get("/api/v1/jobs/none")).status_code == 404
        put = await c.put(
            "/api/v1/jobs/j", json={"name": "j", "target": "ok", "every": "1h", "tz": "Asia/Tokyo"}
        )
        assert (await _json(put))["spec"]["every"] == 3600.0
        wrong = await c.put("/api/v1/jobs/j", json={"name": "other", "target": "ok"})
        assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "name"
        assert (await c.put("/api/v1/jobs/none", json={"name": "none"})).status_code == 404
        patched = await _json(await c.patch("/api/v1/jobs/j", json={"priority": "high"}))
        assert patched["spec"]["priority"] == "high" and patched["spec"]["every"] == 3600.0
        badp = await c.patch("/api/v1/jobs/j", json={"priority": "urgent"})
        assert badp.status_code == 422 and badp.json()["error"]["field"] == "priority"
        assert (await srv.rt.get_job("j")).spec.priority == "high"

        fires = await _json(await c.get("/api/v1/jobs/j/next", params={"count": 3}))
        assert len(fires["fires"]) == 3 and fires["fires"][1] - fires["fires"][0] == 3600.0
        assert fires["tz"] == "Asia/Tokyo" and fires["local"][0].endswith("+09:00")
        assert (await c.get("/api/v1/jobs/j/next", params={"count": 0})).status_code == 422
        off = await _json(await c.post("/api/v1/jobs/j/disable"))
        assert off["spec"]["enabled"] is False and off["next_run_at"] is None
        assert (await _json(await c.post("/api/v1/jobs/j/enable")))["spec"]["enabled"] is True
        run = await _json(await c.post("/api/v1/jobs/j/run", json={"payload": {"a": 1}}), 201)
        d = await srv.rt.wait(run["id"], timeout=10)
        assert d.kind == "run_now" and d.status == "done"
        assert (await c.delete("/api/v1/jobs/j")).json() == {"removed": "j"}
        assert await srv.rt.list_jobs() == []
        assert (await c.delete("/api/v1/jobs/j")).status_code == 404


async def test_enqueue_batch_lookup_and_pages(db_path: str) -> None:
    async with serve(db_path) as srv, srv.client() as c:
        register(srv)
        await srv.rt.pause("runtime")  # everything stays queued: stable listings
        await c.post("/api/v1/jobs", json={"name": "j", "target": "ok"})
        one = await _json(
            await c.post("/api/v1/dispatches", json={"job": "j", "payload": {"n": 0},
                                                     "priority": "high", "delay": 60}), 201
        )  # fmt: skip
        d = await _json(await c.get(f"/api/v1/dispatches/{one['id']}"))
        assert d["priority"] == "high" and d["payload"] == {"n": 0} and d["status"] == "queued"
        both = await c.post("/api/v1/dispatches", json={"job": "j", "delay": 1, "not_before": 5})
        assert both.status_code == 422 and both.json()["error"]["field"] == "delay"

        items: list[Any] = [{"job": "j", "payload": {"n": i}} for i in range(1, 6)]
        items[1] = {"job": "missing"}
        items[3] = {"job": "j", "priority": "urgent"}
        items.append({"job": "j", "max_attempts": 0})
        got = await _json(await c.post("/api/v1/dispatches/batch", json={"items": items}))
        assert got["enqueued"] == 3 and got["failed"] == 3
        res = got["results"]
        assert [r["index"] for r in res] == list(range(6))
        assert res[1]["error"]["status"] == 404
        assert res[3]["error"] == {"status": 422, "field": "items[3].priority",
                                   "message": res[3]["error"]["message"]}  # fmt: skip
        assert res[5]["error"]["field"] == "items[5].max_attempts"
        ids = [r["id"] for r in res if "id" in r]
        assert len(ids) == 3 and all(isinstance(i, int) for i in ids)
        assert len(await srv.rt.dispatches(limit=100)) == 4

        more = [{"job": "j", "payload": {"n": i}} for i in range(10)]
        await c.post("/api/v1/dispatches/batch", json={"items": more})
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = await _json(await c.get("/api/v1/dispatches", params=params))
            seen += [x["id"] for x in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        everything = [x.id for x in await srv.rt.dispatches(limit=100)]
        assert seen == everything and len(seen) == 14  # every row once, newest first
        high = await _json(await c.get("/api/v1/dispatches", params={"priority": "high"}))
        assert [x["id"] for x in high["items"]] == [one["id"]]
        states = await _json(await c.get("/api/v1/dispatches", params={"state": "done,dead"}))
        assert states["items"] == []
        for params in ({"limit": 501}, {"cursor": "zz"}, {"state": "nope"}, {"bogus": 1}):
            bad = await c.get("/api/v1/dispatches", params=params)
            assert bad.status_code == 422, params
            assert bad.json()["error"]["field"].startswith(next(iter(params))), bad.text

        cancel = await _json(await c.post(f"/api/v1/dispatches/{one['id']}/cancel"))
        assert cancel["result"] == "cancelled"
        again = await c.post(f"/api/v1/dispatches/{one['id']}/cancel")
        assert again.status_code == 409
        assert (await c.post("/api/v1/dispatches/999999/cancel")).status_code == 404
        assert (await c.get("/api/v1/dispatches/x1")).json()["error"]["field"] == "id"
        for raw in ("9223372036854775807", "0", str(2**62 + 1)):  # positive, yet past 2^62
            past = await c.get(f"/api/v1/dispatches/{raw}")
            assert past.status_code == 422 and past.json()["error"]["field"] == "id"
            message = past.json()["error"]["message"]
            assert message == f"expected an id from 1 to {2**62} (2^62), got {raw!r}", message
        assert (await c.get(f"/api/v1/dispatches/{2**62}")).status_code == 404  # the cap: in


async def test_runs_and_dead_letters(db_path: str) -> None:
    async with serve(db_path) as srv, srv.client() as c:
        register(srv)
        await c.post("/api/v1/jobs", json={"name": "d", "target": "dies"})
        ids = [
            (await c.post("/api/v1/dispatches", json={"job": "d"})).json()["id"] for _ in range(3)
        ]
        for i in ids:
            await srv.rt.wait(i, timeout=10)
        runs = await _json(await c.get("/api/v1/runs", params={"job": "d", "state": "error"}))
        assert len(runs["items"]) == 3
        detail = await _json(await c.get(f"/api/v1/runs/{runs['items'][0]['id']}"))
        assert detail["run"]["error"] and [a["id"] for a in detail["attempts"]] == [
            runs["items"][0]["id"]
        ]
        dead = await _json(await c.get("/api/v1/dead", params={"limit": 2}))
        assert len(dead["items"]) == 2 and dead["next_cursor"]
        retried = await _json(await c.post(f"/api/v1/dead/{ids[0]}/retry"))
        assert retried["ids"] == [ids[0]]
        await srv.rt.wait(ids[0], timeout=10)
        detail = await _json(await c.get("/api/v1/runs", params={"dispatch_id": ids[0]}))
        assert len(detail["items"]) == 2  # the first attempt and the retry's
        many = await _json(await c.post("/api/v1/dead/retry", json={"ids": [ids[1], 999]}))
        assert many == {"ids": [ids[1]], "not_found": [999]}
        await srv.rt.wait(ids[1], timeout=10)
        both = await c.post("/api/v1/dead/retry", json={"ids": [1], "all": True})
        assert both.status_code == 422
        assert (await c.delete(f"/api/v1/dead/{ids[2]}")).json()["count"] == 1
        assert (await c.delete(f"/api/v1/dead/{ids[2]}")).status_code == 404
        purged = await _json(await c.post("/api/v1/dead/purge", json={"all": True}))
        assert purged["count"] == 2
        assert (await srv.rt.stats())["dispatches"]["dead"] == 0


async def test_approvals_agents_messages_status(db_path: str) -> None:
    async with serve(db_path) as srv, srv.client() as c:
        register(srv)
        gate = {"required": True}
        job = {"name": "g", "target": "ok", "approval": gate, "options": {"delivery_to": "@ops"}}
        await _json(await c.post("/api/v1/jobs", json=job), 201)
        first = (await c.post("/api/v1/dispatches", json={"job": "g"})).json()["id"]
        second = (await c.post("/api/v1/dispatches", json={"job": "g"})).json()["id"]
        pending = await _json(await c.get("/api/v1/approvals", params={"status": "pending"}))
        by_dispatch = {a["dispatch_id"]: a["id"] for a in pending}
        ok_ = await _json(await c.post(f"/api/v1/approvals/{by_dispatch[first]}/approve", json={}))
        assert ok_["status"] == "approved" and ok_["resolved_by"] == "admin"
        again = await c.post(f"/api/v1/approvals/{by_dispatch[first]}/approve", json={})
        assert again.status_code == 409
        no_reason = await c.post(f"/api/v1/approvals/{by_dispatch[second]}/reject", json={})
        assert no_reason.status_code == 422 and no_reason.json()["error"]["field"] == "reason"
        rej = await c.post(f"/api/v1/approvals/{by_dispatch[second]}/reject", json={"reason": "no"})
        assert (await _json(rej))["status"] == "rejected"
        assert (await srv.rt.wait(first, timeout=10)).status == "done"
        assert (await c.get("/api/v1/approvals/424242")).status_code == 404

        coder = {"id": "coder", "capabilities": ["Py"]}
        agent = await _json(await c.post("/api/v1/agents", json=coder), 201)
        assert agent["capabilities"] == ["py"]
        assert (await c.post("/api/v1/agents", json={"id": "coder"})).status_code == 409
        badcap = await c.post("/api/v1/agents", json={"id": "x", "capabilities": ["a b"]})
        assert badcap.status_code == 422 and badcap.json()["error"]["field"] == "capabilities[0]"
        patched = await _json(await c.patch("/api/v1/agents/coder", json={"max_concurrent": 7}))
        assert patched["max_concurrent"] == 7
        assert (await _json(await c.post("/api/v1/agents/coder/drain")))["status"] == "draining"
        assert (await _json(await c.post("/api/v1/agents/coder/undrain")))["status"] == "ready"
        assert [a["id"] for a in await _json(await c.get("/api/v1/agents"))] == ["coder"]
        assert (await c.delete("/api/v1/agents/coder")).status_code == 200
        assert (await c.get("/api/v1/agents/coder")).status_code == 404

        async with srv.client(token=AGENT) as a1:
            hello = {"to_agent": "main", "body": "hi"}
            sent = await _json(await a1.post("/api/v1/messages", json=hello), 201)
            forged = await a1.post("/api/v1/messages", json={**hello, "from_agent": "boss"})
            spawn = await a1.post("/api/v1/messages", json={**hello, "kind": "spawn"})
            assert spawn.status_code == 403 and spawn.json()["error"]["field"] == "kind"
            assert forged.status_code == 403
        msg = await _json(await c.get(f"/api/v1/messages/{sent['id']}"))
        assert msg["from_agent"] == "a1" and msg["status"] == "pending"
        inbox = await _json(await c.get("/api/v1/messages", params={"inbox": "main"}))
        assert [m["id"] for m in inbox] == [sent["id"]]
        async with srv.client(token=AGENT) as a1:  # not for a1: it may not mark it
            assert (await a1.post(f"/api/v1/messages/{sent['id']}/ack")).status_code == 403
        assert (await _json(await c.post(f"/api/v1/messages/{sent['id']}/ack")))["count"] == 1
        assert (await srv.rt.message(sent["id"])).ack_at is not None

        paused = await _json(
            await c.post("/api/v1/pauses", json={"scope": "job", "name": "g"}), 201
        )
        assert paused["scope"] == "job"
        assert len(await _json(await c.get("/api/v1/pauses"))) == 1
        resumed = await c.post("/api/v1/pauses/resume", json={"scope": "all"})
        assert (await _json(resumed))["resumed"] == ["job:g"]

        async with srv.client(token=READ) as r:
            st = await _json(await r.get("/api/v1/status"))
            assert st["dispatches"]["done"] == 1 and st["dispatches"]["cancelled"] == 1
            assert st["daemon"]["serving"] is True and "dispatcher" in st["actors"]["children"]
            assert "spawn_failed" in st["extra"]
            stats = await _json(await r.get("/api/v1/stats"))
            assert stats["store"]["jobs"] == 1 and "dispatcher" in stats["runtime"]


async def test_running_dispatch_cancel_is_requested(db_path: str) -> None:
    import anyio

    started = anyio.Event()

    async def slow(payload: dict[str, Any]) -> None:
        started.set()
        await anyio.sleep_forever()

    async with serve(db_path) as srv, srv.client() as c:
        srv.rt.register("slow", slow)
        await c.post("/api/v1/jobs", json={"name": "s", "target": "slow"})
        i = (await c.post("/api/v1/dispatches", json={"job": "s"})).json()["id"]
        await started.wait()
        got = await _json(await c.post(f"/api/v1/dispatches/{i}/cancel"))
        assert got["result"] == "cancel_requested"
        assert (await srv.rt.wait(i, timeout=10)).status == "cancelled"


async def test_bad_bodies_get_4xx_naming_the_field_and_store_nothing(db_path: str) -> None:
    """Deep JSON, a non-object batch item, a rename by PATCH, an instant past the year
    9999, a reply to no message: each a 4xx naming what was wrong, never a 500."""
    async with serve(db_path) as srv, srv.client() as c:
        register(srv)
        await _json(await c.post("/api/v1/jobs", json={"name": "j", "target": "ok"}), 201)
        deep = '{"job":"j","payload":' + '{"a":' * 3000 + "1" + "}" * 3001
        got = await c.post(
            "/api/v1/dispatches", content=deep, headers={"content-type": "application/json"}
        )
        assert got.status_code == 422 and "nested too deeply" in got.text, got.text
        payload: Any = 1
        for _ in range(100):
            payload = {"a": payload}
        got = await c.post("/api/v1/dispatches", json={"job": "j", "payload": payload})
        assert got.status_code == 422 and got.json()["error"]["field"].startswith("payload.a")
        batch = await _json(
            await c.post("/api/v1/dispatches/batch", json={"items": [{"job": "j"}, 5]})
        )
        assert (batch["enqueued"], batch["failed"]) == (1, 1)
        assert batch["results"][1]["error"]["field"].startswith("items[1]")
        for bad, field in (
            ('{"job":"j","payload":{"a":1e400}}', "items[1].payload"),  # out of range
            ('{"job":"j","delay":1e400}', "items[1].delay"),
            ('{"job":"j","payload":' + '{"a":' * 100 + "1" + "}" * 101, "items[1].payload.a"),
        ):  # (a body too deep to decode at all, ~1000 levels, is refused whole: above)
            body = '{"items":[{"job":"j"},' + bad + ',{"job":"j","priority":"urgent"}]}'
            got = await c.post(
                "/api/v1/dispatches/batch", content=body,
                headers={"content-type": "application/json"},
            )  # fmt: skip
            batch = await _json(got)
            assert (batch["enqueued"], batch["failed"]) == (1, 2), batch
            assert "id" in batch["results"][0]
            for i, at in ((1, field), (2, "items[2].priority")):
                error = batch["results"][i]["error"]
                assert error["status"] == 422 and error["field"].startswith(at), error
            assert "out of range" in str(batch) or "nested too deeply" in str(batch), batch
        caps = await c.post("/api/v1/dispatches", json={"job": "j", "capabilities": ["bad cap"]})
        assert caps.status_code == 422 and caps.json()["error"]["field"] == "capabilities[0]"
        renamed = await c.patch("/api/v1/jobs/j", json={"name": "renamed"})
        assert renamed.status_code == 422 and renamed.json()["error"]["field"] == "name"
        late = await c.post(
            "/api/v1/jobs",
            json={"name": "late", "executor": "shell", "target": "true", "at": "in 3000000d"},
        )
        assert late.status_code == 422 and late.json()["error"]["field"] == "at", late.text
        reply = await c.post(
            "/api/v1/messages",
            json={"from_agent": "a", "to_agent": "b", "body": "x", "reply_to": 999999},
        )
        assert reply.status_code == 422 and reply.json()["error"]["field"] == "reply_to"
        assert [j.name for j in await srv.rt.list_jobs()] == ["j"]
        assert len(await srv.rt.dispatches()) == 4  # the good item of each batch alone
        assert await srv.rt.messages() == []


async def test_status_answers_the_cli_data_with_extra_and_epoch_times(
    db_path: str, tmp_path: Any
) -> None:
    """README: the core counts at the top, the later sections under ``extra`` (with the
    daemon's spool when it has one), times as epoch seconds."""
    from shepherd.actors.spool.config import SpoolConfig

    spool = SpoolConfig(dir=str(tmp_path / "spool"))
    async with serve(db_path, spool=spool) as srv, srv.client(token=READ) as r:
        await srv.rt.pause("runtime", None, "maintenance")
        st = await _json(await r.get("/api/v1/status"))
        extra = st["extra"]
        assert set(extra) == {"agents", "unmatched", "pauses", "rates", "spawn_failed",
                              "groups_open", "cluster", "spool"}  # fmt: skip
        assert extra["spool"]["dir"] == spool.dir and extra["spool"]["pending"] == 0
        assert isinstance(extra["pauses"][0]["paused_at"], float)
        assert {"breakers", "actors", "instance", "approvals_pending"} <= set(st)
