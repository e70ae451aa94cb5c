"""``/api/v1/groups`` through a real uvicorn: create (201; bad input 422 naming the
field, nothing stored), list, show by name (with ``/``) or id, reports and heartbeats
of members named in the body, the group ending when every member is final; the scopes
(read: 403 on a change; agent: may create and report) and the OpenAPI listing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.http_helpers import AGENT, READ, serve

pytestmark = pytest.mark.anyio


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.request.url, resp.text)
    return resp.json()


def _field(resp: httpx.Response) -> str | None:
    assert resp.status_code == 422, resp.text
    field: str | None = resp.json()["error"].get("field")
    return field


async def test_a_group_over_rest(db_path: str) -> None:
    async with serve(db_path) as srv, srv.client() as c:
        body = {"name": "nightly/eu", "members": ["a", "b/1"], "timeout": "10m"}
        made = _ok(await c.post("/api/v1/groups", json=body), 201)
        assert made["name"] == "nightly/eu" and made["status"] == "open"
        assert made["timeout"] == 600.0 and made["heartbeat_window"] == 300.0
        assert made["created_by"] == "admin"
        gid = made["id"]
        for path in ("nightly/eu", "nightly%2Feu", str(gid)):
            assert _ok(await c.get(f"/api/v1/groups/{path}"))["id"] == gid
        assert [g["id"] for g in _ok(await c.get("/api/v1/groups?status=open"))] == [gid]

        url = "/api/v1/groups/nightly/eu"
        beat = _ok(await c.post(f"{url}/heartbeat", json={"member": "b/1"}))
        assert beat["result"] == "ok" and beat["group_status"] == "open"
        started = {"member": "a", "status": "started"}
        assert _ok(await c.post(f"{url}/report", json=started))["member_status"] == "started"
        done = {"member": "a", "status": "completed", "message": "12 files"}
        assert _ok(await c.post(f"/api/v1/groups/{gid}/report", json=done))["result"] == "ok"
        failed = {"member": "b/1", "status": "failed", "message": "disk full"}
        last = _ok(await c.post(f"{url}/report", json=failed))
        assert last["group_status"] == "failed" and last["delivery_id"] is None
        shown = _ok(await c.get(url))
        assert shown["status"] == "failed" and "1/2 ok" in shown["summary"]
        assert {m["label"]: m["status"] for m in shown["members"]} == {
            "a": "completed", "b/1": "failed",
        }  # fmt: skip
        # a final member, an ended group: 422 naming the field; an unknown group: 404
        assert _field(await c.post(f"{url}/report", json=done)) in ("member", "group")
        missing = await c.post("/api/v1/groups/nope/heartbeat", json={"member": "a"})
        assert missing.status_code == 404
        assert (await c.get("/api/v1/groups/424242")).status_code == 404


async def test_bad_group_input_names_the_field_and_stores_nothing(db_path: str) -> None:
    async with serve(db_path) as srv, srv.client() as c:
        for body, field in (
            ({"name": "g", "members": []}, "members"),
            ({"name": "g", "members": ["a", "a"]}, "members[1]"),
            ({"name": "g", "members": ["a", "-x"]}, "members[1]"),
            ({"name": "123", "members": ["a"]}, "name"),
            ({"name": "g", "members": ["a"], "timeout": 0}, "timeout"),
            ({"name": "g", "members": ["a"], "heartbeat_window": "40d"}, "heartbeat_window"),
            ({"name": "g", "members": ["a"], "colour": "red"}, "colour"),
            ({"members": ["a"]}, "name"),
            ({"name": "g", "members": "a"}, "members"),
        ):
            assert _field(await c.post("/api/v1/groups", json=body)) == field, body
        assert await srv.rt.groups() == []
        _ok(await c.post("/api/v1/groups", json={"name": "g", "members": ["a"]}), 201)
        again = await c.post("/api/v1/groups", json={"name": "g", "members": ["a"]})
        assert _field(again) == "name"  # an open group of the name exists
        url = "/api/v1/groups/g/report"
        assert _field(await c.post(url, json={"member": "zz", "status": "started"})) == "member"
        assert _field(await c.post(url, json={"member": "a", "status": "dead"})) == "status"
        assert _field(await c.post(url, json={"status": "started"})) == "member"
        assert _field(await c.get("/api/v1/groups?status=gone")) == "status"
        assert (await srv.rt.group("g")).members[0].status == "pending"


async def test_group_scopes_and_the_document(db_path: str) -> None:
    async with serve(db_path) as srv:
        async with srv.client(token=READ) as r:
            refused = await r.post("/api/v1/groups", json={"name": "g", "members": ["a"]})
            assert refused.status_code == 403
            assert _ok(await r.get("/api/v1/groups")) == []
        async with srv.client(token=AGENT, agent="a1") as a:
            made = _ok(await a.post("/api/v1/groups", json={"name": "g", "members": ["x"]}), 201)
            assert made["created_by"] == "a1"
            beat = await a.post("/api/v1/groups/g/heartbeat", json={"member": "x"})
            assert _ok(beat)["result"] == "ok"
        async with srv.client(token=READ) as r:
            assert (
                await r.post("/api/v1/groups/g/heartbeat", json={"member": "x"})
            ).status_code == 403
            paths = _ok(await r.get("/openapi.json"))["paths"]
        assert set(paths["/api/v1/groups"]) == {"get", "post"}
        assert set(paths["/api/v1/groups/{ref}"]) == {"get"}
        assert set(paths["/api/v1/groups/{ref}/report"]) == {"post"}
        assert set(paths["/api/v1/groups/{ref}/heartbeat"]) == {"post"}
