"""GET /api/v1/events through a real uvicorn: the event stream contract.

- an enqueued job's dispatch, run_started and outcome arrive in order, with the
  contract's fields and increasing ids;
- the kind / job / agent filters keep only what they name; a bad kind is a 422
  naming the field; no token is a 401, a dashboard session hook is tried first;
- other modules' ``publish(kind, data)`` reaches the stream (lease events);
- a subscriber that does not read loses items (counted), never slows dispatch;
- keepalive comments in silence; the runtime's stop ends an open stream;
- with nobody connected the dispatcher builds no DispatchQueued.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from shepherd import JobSpec
from shepherd.actors.messages import DispatchQueued
from shepherd.runtime.http.auth import Principal
from shepherd.runtime.http.events import EventStream, hub_of
from tests.helpers import eventually
from tests.http_helpers import READ, Served, serve

pytestmark = pytest.mark.anyio


async def noop(payload: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


async def boom(payload: dict[str, Any]) -> None:
    raise RuntimeError("boom")


TARGETS = {"noop": noop, "boom": boom}


async def frames(resp: httpx.Response) -> AsyncIterator[tuple[int, str, dict[str, Any]] | str]:
    """Parse an SSE body: ``(id, event, data)`` per event, the text of each comment."""
    ident, event, data = 0, "", ""
    async for line in resp.aiter_lines():
        if line.startswith(":"):
            yield line[1:].strip()
        elif line.startswith("id: "):
            ident = int(line[4:])
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event:
            yield ident, event, json.loads(data)
            ident, event, data = 0, "", ""


async def collect(
    srv: Served, params: dict[str, str], until: Any, *, token: str = READ, limit: float = 20.0
) -> list[tuple[int, str, dict[str, Any]]]:
    """Connect, run ``until(send_ready)`` beside the stream, gather events until
    ``until`` says it has enough (it is given the list so far)."""
    got: list[tuple[int, str, dict[str, Any]]] = []
    async with srv.client(token) as c, c.stream("GET", "/api/v1/events", params=params) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        with anyio.fail_after(limit):
            async for f in frames(resp):
                if f == "connected":
                    await until(None)
                    continue
                if isinstance(f, tuple):
                    got.append(f)
                    if await until(got):
                        break
    return got


async def test_an_enqueued_job_streams_dispatch_run_started_outcome(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        await srv.rt.add_job(JobSpec(name="noop", target="noop", priority="high"))
        ids: list[int] = []

        async def until(got: list[Any] | None) -> bool:
            if got is None:
                ids.append(await srv.rt.enqueue("noop", {}))
                return False
            return any(k == "outcome" for _, k, _d in got)

        got = await collect(srv, {}, until)
        kinds = [k for _, k, _d in got]
        assert kinds == ["dispatch", "run_started", "outcome"]
        seqs = [i for i, _, _d in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        d, s, o = (data for _, _, data in got)
        assert d == {
            "kind": "dispatch", "at": d["at"], "dispatch_id": ids[0], "job": "noop",
            "priority": "high", "state": "queued", "source": "enqueue",
        }  # fmt: skip
        assert s["dispatch_id"] == ids[0] and s["job"] == "noop" and s["attempt"] == 1
        assert s["agent"] == "" and isinstance(s["run_id"], int)
        assert o["outcome"] == "ok" and o["status"] == "done" and o["final"] is True
        assert o["run_id"] == s["run_id"] and o["error"] is None and o["agent"] == ""
        assert all(isinstance(x["at"], float) for x in (d, s, o))


async def test_filters_keep_what_they_name(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        await srv.rt.add_job(JobSpec(name="noop", target="noop"))
        await srv.rt.add_job(JobSpec(name="boom", target="boom"))

        async def until(got: list[Any] | None) -> bool:
            if got is None:
                await srv.rt.enqueue("noop", {})
                await srv.rt.enqueue("boom", {}, max_attempts=1)
                await srv.rt.enqueue("noop", {})
                return False
            return len(got) >= 1 and got[-1][2]["job"] == "boom"

        got = await collect(srv, {"kind": "outcome", "job": "boom"}, until)
        assert [(k, d["job"], d["outcome"], d["status"]) for _, k, d in got] == [
            ("outcome", "boom", "crashed", "dead")
        ]
        assert "boom" in (got[0][2]["error"] or "")

        async def two(got: list[Any] | None) -> bool:
            if got is None:
                await srv.rt.enqueue("noop", {})
                return False
            return len(got) >= 2

        got = await collect(srv, {"kind": "dispatch,outcome"}, two)
        assert [k for _, k, _d in got] == ["dispatch", "outcome"]


async def test_agent_filter_and_published_lease_events(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        hub = hub_of(srv.rt.asgi_app)
        assert hub is not None

        async def until(got: list[Any] | None) -> bool:
            if got is None:
                hub.publish("lease", {"run_id": 7, "job": "j", "agent": "a2", "event": "claimed"})
                hub.publish("lease", {"run_id": 8, "job": "j", "agent": "a1", "event": "claimed"})
                hub.publish("lease", {"run_id": 8, "job": "j", "agent": "a1", "event": "progress"})
                return False
            return len(got) >= 2

        got = await collect(srv, {"agent": "a1", "kind": "lease"}, until)
        assert [(d["run_id"], d["event"]) for _, _, d in got] == [(8, "claimed"), (8, "progress")]
        assert all(d["kind"] == "lease" and isinstance(d["at"], float) for _, _, d in got)


async def test_auth_and_bad_query(db_path: str) -> None:
    async with serve(db_path) as srv:
        async with srv.client(None) as c:
            r = await c.get("/api/v1/events")
            assert r.status_code == 401
            assert r.json()["error"]["status"] == 401
            assert r.headers["www-authenticate"] == "Bearer"
        async with srv.client("not-a-token") as c:
            assert (await c.get("/api/v1/events")).status_code == 401
        async with srv.client(READ) as c:
            r = await c.get("/api/v1/events", params={"kind": "dispatch,nonsense"})
            assert r.status_code == 422 and r.json()["error"]["field"] == "kind[1]"
            r = await c.get("/api/v1/events", params={"colour": "blue"})
            assert r.status_code == 422 and "colour" in r.json()["error"]["message"]
        # the dashboard's session: tried first, a cookie instead of a token
        ctx = srv.rt.asgi_app.state.http
        ctx.state["session_principal"] = lambda req: (
            Principal("session", "read") if req.cookies.get("sid") == "good" else None
        )
        async with (
            httpx.AsyncClient(base_url=srv.url, cookies={"sid": "good"}) as c,
            c.stream("GET", "/api/v1/events") as resp,
        ):
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                assert line == ": connected"
                break
        async with httpx.AsyncClient(base_url=srv.url, cookies={"sid": "bad"}) as c:
            assert (await c.get("/api/v1/events")).status_code == 401


async def test_keepalive_and_stop_ends_the_stream(db_path: str) -> None:
    async with serve(db_path) as srv:
        hub = hub_of(srv.rt.asgi_app)
        assert hub is not None
        hub.keepalive = 0.05
        async with srv.client(READ) as c, c.stream("GET", "/api/v1/events") as resp:
            comments: list[str] = []
            it = frames(resp)
            with anyio.fail_after(10):
                while comments.count("keepalive") < 2:
                    f = await it.__anext__()
                    if isinstance(f, str):
                        comments.append(f)
            assert comments[0] == "connected"
            assert hub.statistics()["subscribers"] == 1
            hub.close()  # what the http actor's stop does first
            with anyio.fail_after(10):
                async for _ in it:
                    pass  # the body ends
        await _eventually_no_subscribers(hub)


async def _eventually_no_subscribers(hub: EventStream) -> None:
    with anyio.fail_after(10):
        while hub.statistics()["subscribers"]:
            await anyio.sleep(0.01)


async def test_a_subscriber_that_does_not_read_loses_items_not_dispatch(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        await srv.rt.add_job(JobSpec(name="noop", target="noop"))
        hub = hub_of(srv.rt.asgi_app)
        assert hub is not None
        async with hub.subscribe(buffer=2) as stalled:  # never read
            ids = [await srv.rt.enqueue("noop", {}) for _ in range(5)]
            for i in ids:
                assert (await srv.rt.wait(i)).status == "done"
            # 5 x (dispatch, run_started, outcome); two fit in the buffer. A waiter is
            # answered by the commit, the hub by its own listener: the last outcome may
            # reach the hub a moment after wait() returns
            await eventually(lambda: stalled.dropped >= 13, what="13 events dropped")
            assert stalled.dropped == 13
            assert hub.statistics()["dropped"] == 13


async def test_unit_hub_counts_drops_and_filters() -> None:
    hub = EventStream(None, buffer=2)
    async with hub.subscribe(["outcome"]) as sub, hub.subscribe(job="x") as other:
        for n in range(4):
            hub.publish("outcome", {"job": "x", "n": n})
        hub.publish("dispatch", {"job": "y"})
        assert sub.dropped == 2 and other.dropped == 2
        assert hub.dropped == 4 and hub.seq == 5
        first = await sub.next(1.0)
        assert first is not None and first[0] == 1 and first[2]["n"] == 0
        assert first[2]["kind"] == "outcome" and isinstance(first[2]["at"], float)


async def test_no_listener_no_dispatch_queued(db_path: str) -> None:
    async with serve(db_path, open={"targets": TARGETS}) as srv:
        assert not srv.rt.events.wants(DispatchQueued)  # the metrics do not ask for it
        hub = hub_of(srv.rt.asgi_app)
        assert hub is not None
        async with hub.subscribe():
            assert srv.rt.events.wants(DispatchQueued)
        assert not srv.rt.events.wants(DispatchQueued)


async def test_the_runtime_stops_with_a_stream_open(db_path: str) -> None:
    lines: list[str] = []
    with anyio.fail_after(30):  # a hang guard: the grace below is a minute
        async with serve(db_path, shutdown_grace=60) as srv:
            client = srv.client(READ)
            stream = client.stream("GET", "/api/v1/events")
            resp = await stream.__aenter__()
            it = resp.aiter_lines()
            lines.append(await it.__anext__())
        async for line in it:  # the server ended the body as it stopped
            lines.append(line)
        await stream.__aexit__(None, None, None)
        await client.aclose()
    assert lines[0] == ": connected"


async def test_a_lagging_client_is_told_what_it_lost(db_path: str) -> None:
    async with serve(db_path) as srv:
        hub = hub_of(srv.rt.asgi_app)
        assert hub is not None
        hub.buffer = 2  # connections made from now on
        async with srv.client(READ) as c, c.stream("GET", "/api/v1/events") as resp:
            it = frames(resp)
            with anyio.fail_after(10):
                assert await it.__anext__() == "connected"
                for n in range(5):  # in one go: the stream's task has no turn meanwhile
                    hub.publish("lease", {"run_id": n, "job": "j", "agent": "", "event": "claimed"})
                got = [await it.__anext__() for _ in range(3)]
        assert got[0] == "dropped 3"  # two fit in the buffer
        assert [(f[0], f[2]["run_id"]) for f in got[1:] if isinstance(f, tuple)] == [
            (hub.seq - 4, 0),
            (hub.seq - 3, 1),
        ]
        assert hub.statistics()["dropped"] == 3
