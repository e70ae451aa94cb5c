"""Job names with ``/`` on every job route, through a real uvicorn (the raw path
matters): the name sent as is or with ``%2F``; the action suffixes (``/run``,
``/enable``, ``/disable``, ``/next``) matched first and only as a literal last segment,
so a job named ``x/run`` or ``x/next`` stays reachable; the Python client quoting names.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shepherd import RunContext
from shepherd.runtime.client import Client
from tests.http_helpers import ADMIN, serve

pytestmark = pytest.mark.anyio


async def ok(ctx: RunContext) -> dict[str, Any]:
    return {"echo": ctx.payload}


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.request.url, resp.text)
    return resp.json()


@pytest.mark.parametrize("path", ["a/b", "a%2Fb", "a%2fb"])
async def test_a_job_name_with_a_slash_on_every_route(db_path: str, path: str) -> None:
    async with serve(db_path) as srv, srv.client() as c:
        srv.rt.register("ok", ok)
        body = {"name": "a/b", "target": "ok", "every": "1h"}
        assert _ok(await c.post("/api/v1/jobs", json=body), 201)["spec"]["name"] == "a/b"
        url = f"/api/v1/jobs/{path}"
        assert _ok(await c.get(url))["spec"]["name"] == "a/b"
        assert _ok(await c.patch(url, json={"priority": "high"}))["spec"]["priority"] == "high"
        assert _ok(await c.put(url, json={**body, "every": "2h"}))["spec"]["every"] == 7200.0
        assert _ok(await c.post(f"{url}/disable"))["spec"]["enabled"] is False
        assert _ok(await c.post(f"{url}/enable"))["spec"]["enabled"] is True
        run = _ok(await c.post(f"{url}/run", json={"payload": {"x": 1}}), 201)
        assert run["job"] == "a/b" and (await srv.rt.dispatch(run["id"])).job_name == "a/b"
        fires = _ok(await c.get(f"{url}/next", params={"count": 2}))
        assert fires["job"] == "a/b" and len(fires["fires"]) == 2
        assert _ok(await c.delete(url)) == {"removed": "a/b"}
        assert (await c.get(url)).status_code == 404


async def test_a_job_named_like_an_action_stays_reachable(db_path: str) -> None:
    """The rule: an action suffix is a literal last segment and is tried first; a
    method no action has (GET/PUT/PATCH/DELETE .../run) is the name's own route."""
    async with serve(db_path) as srv, srv.client() as c:
        srv.rt.register("ok", ok)
        for name in ("x", "x/run", "x/next", "x/enable"):
            job = {"name": name, "target": "ok", "every": "1h"}
            _ok(await c.post("/api/v1/jobs", json=job), 201)

        assert _ok(await c.get("/api/v1/jobs/x/run"))["spec"]["name"] == "x/run"
        patched = _ok(await c.patch("/api/v1/jobs/x/run", json={"priority": "low"}))
        assert patched["spec"]["name"] == "x/run" and patched["spec"]["priority"] == "low"
        assert _ok(await c.get("/api/v1/jobs/x/enable"))["spec"]["name"] == "x/enable"
        # POST .../run is the action: job x's; job x/run's own run quotes its slash
        assert _ok(await c.post("/api/v1/jobs/x/run", json={}), 201)["job"] == "x"
        assert _ok(await c.post("/api/v1/jobs/x%2Frun/run", json={}), 201)["job"] == "x/run"
        # GET .../next is the action; the job x/next is reached with %2F
        assert _ok(await c.get("/api/v1/jobs/x/next"))["job"] == "x"
        assert _ok(await c.get("/api/v1/jobs/x%2Fnext"))["spec"]["name"] == "x/next"
        assert _ok(await c.get("/api/v1/jobs/x%2Fnext/next"))["job"] == "x/next"
        assert _ok(await c.delete("/api/v1/jobs/x/run")) == {"removed": "x/run"}
        assert sorted(j.name for j in await srv.rt.list_jobs()) == ["x", "x/enable", "x/next"]


async def test_the_client_quotes_job_names(db_path: str) -> None:
    async with serve(db_path) as srv, Client(srv.url, token=ADMIN) as c:
        srv.rt.register("ok", ok)
        await c.add_job({"name": "x", "target": "ok", "every": "1h"})
        for name in ("a/b", "x/run", "x/next"):
            await c.add_job({"name": name, "target": "ok", "every": "1h"})
            assert (await c.job(name)).name == name
            assert (await c.update_job(name, priority="high")).spec.priority == "high"
            assert (await c.disable(name)).spec.enabled is False
            assert (await c.enable(name)).spec.enabled is True
            assert (await srv.rt.dispatch(await c.run_now(name, {"n": 1}))).job_name == name
            assert len(await c.next_fires(name, 3)) == 3
            await c.remove_job(name)
        assert [j.name for j in await c.jobs()] == ["x"]
