"""External workers through a real uvicorn on loopback: the lease's whole life.

- claim → heartbeat → progress → complete: the dispatch is done, the result is on the
  run, and the lease's facts are in the run's details;
- fail retryable → a second attempt is offered (a new token); fail non-retryable → dead;
- a lease not renewed within idle_timeout ends the run ``timeout``; the retry gets a
  new token; the old token's complete is 409 and recorded (counter, note on the run);
- capability matching; a dispatch assigned to an agent is claimable by it alone (and
  its claim is a registry heartbeat);
- long-poll: 204 when nothing comes within ``wait``, wakes the moment work arrives;
- bad input: a malformed token 422, an unknown run 404, another agent's lease 403;
- the worker client: leases with automatic heartbeats, ``LeaseLost`` on a stale token;
  the REST client's ``leases``;
- lease events (claimed, completed, stale) on the SSE stream;
- a claimed run is its worker's: ``runs.agent`` (the runs filter, while it runs and
  after), the outcome event's ``agent``, the registry's count and the agent's limit;
  its retry is offered to any worker again.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from shepherd import JobSpec
from shepherd.runtime.worker_client import LeaseLost, WorkerClient
from shepherd.store.bounds import MAX_DEPTH, TOO_DEEP
from shepherd.store.models import RetryPolicy
from tests.helpers import eventually
from tests.http_helpers import ADMIN, AGENT, serve

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=3, base=0.01, max_delay=0.01)  # type: ignore[arg-type]
NO_LIMIT = {"rate_limit": 0}


def nested_list(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def ext_job(name: str = "ext", **kw: Any) -> JobSpec:
    kw.setdefault("retry", FAST)
    return JobSpec(name=name, executor="external", **kw)


async def claim(c: httpx.AsyncClient, wait: float = 5.0, **body: Any) -> httpx.Response:
    return await c.post("/api/v1/workers/claim", json={"wait": wait, **body})


async def report(
    c: httpx.AsyncClient, lease: dict[str, Any], what: str, **body: Any
) -> httpx.Response:
    url = f"/api/v1/workers/leases/{lease['run_id']}/{what}"
    return await c.post(url, json={"token": lease["token"], **body})


def board_stats(rt: Any) -> dict[str, int]:
    stats: dict[str, int] = rt.executors["external"].statistics()
    return stats


async def test_lease_life_claim_heartbeat_progress_complete(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        await srv.rt.add_job(ext_job())
        did = await srv.rt.enqueue("ext", {"n": 7})
        got = await claim(c)
        assert got.status_code == 200, got.text
        lease = got.json()["lease"]
        assert lease["dispatch_id"] == did and lease["payload"] == {"n": 7}
        assert lease["attempt"] == 1 and lease["agent"] == "a1" and lease["job"] == "ext"
        assert lease["token"].startswith(f"{lease['run_id']}.")
        assert lease["idle_timeout"] == 30.0
        beat = await report(c, lease, "heartbeat")
        assert beat.status_code == 200 and beat.json()["state"] == "renewed"
        assert beat.json()["deadline"] >= lease["deadline"]
        prog = await report(c, lease, "progress", progress=50, message="half")
        assert prog.status_code == 200
        done = await report(c, lease, "complete", result={"ok": True})
        assert done.status_code == 200 and done.json()["state"] == "completed"
        final = await srv.rt.wait(did)
        assert final.status == "done"
        run = await srv.rt.run(lease["run_id"])
        assert run.status == "ok" and run.result == {"ok": True}
        assert run.details is not None
        assert run.details["lease"]["agent"] == "a1"
        assert run.details["lease"]["progress"] == 50
        assert run.details["lease"]["message"] == "half"
        # a second complete with the same token: the lease is gone → 409, recorded
        again = await report(c, lease, "complete", result=1)
        assert again.status_code == 409
        assert board_stats(srv.rt)["stale"] == 1
        assert srv.rt.statistics()["leases"]["stale"] == 1


async def test_a_claimed_run_is_the_workers(db_path: str) -> None:
    from shepherd.actors.messages import OutcomeEvent

    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        rt = srv.rt

        async def agent_of(run_id: int) -> str | None:
            return (await rt.run(run_id)).agent  # type: ignore[no-any-return]

        async def next_outcome(events: Any, dispatch_id: int) -> Any:
            with anyio.fail_after(10):
                while (ev := await events.receive()).dispatch_id != dispatch_id:
                    pass
            return ev

        await rt.add_agent("a1", capabilities=["gpu"], max_concurrent=1)
        await rt.add_job(ext_job())
        await rt.add_job(ext_job("gpu", capabilities=["gpu"]))
        async with rt.subscribe(OutcomeEvent) as events:
            did = await rt.enqueue("ext")
            lease = (await claim(c)).json()["lease"]
            run_id = lease["run_id"]
            await eventually(lambda: agent_of(run_id), what="the run's agent")
            assert await agent_of(run_id) == "a1"
            running = (await c.get("/api/v1/runs", params={"agent": "a1"})).json()["items"]
            assert [r["id"] for r in running] == [run_id]
            assert (await rt.agent("a1")).running == 1
            # a1 is at its limit (1): a dispatch assignment would give it waits
            gpu = await rt.enqueue("gpu")

            async def waits() -> bool:
                d = await rt.dispatch(gpu)
                return d.status == "queued" and d.wait_reason is not None

            await eventually(waits, what="the gpu dispatch waiting for a1")
            assert (await report(c, lease, "fail", error="flaky")).status_code == 200
            ev = await next_outcome(events, did)
            assert (ev.status, ev.agent) == ("queued", "a1")

            async def assigned() -> bool:
                d = await rt.dispatch(gpu)
                return d.status == "running" and d.agent == "a1"

            await eventually(assigned, what="the slot a1's failed run freed")
            # the retry is nobody's until claimed: another worker takes it
            async with srv.client(ADMIN, agent="a2") as c2:
                second = (await claim(c2)).json()["lease"]
                assert second["dispatch_id"] == did and second["attempt"] == 2
                assert (await report(c2, second, "complete", result=1)).status_code == 200
            assert (await rt.wait(did)).status == "done"
            ev = await next_outcome(events, did)
            assert (ev.status, ev.agent) == ("done", "a2")
        assert await agent_of(run_id) == "a1"
        assert await agent_of(second["run_id"]) == "a2"
        done = (await c.get("/api/v1/runs", params={"agent": "a2"})).json()["items"]
        assert [(r["id"], r["status"]) for r in done] == [(second["run_id"], "ok")]
        assert (await rt.dispatch(did)).agent == "a2"
        assert (await rt.agent("a1")).running == 1  # the gpu run only


async def test_fail_retryable_is_retried_and_non_retryable_is_dead(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        await srv.rt.add_job(ext_job())
        did = await srv.rt.enqueue("ext")
        first = (await claim(c)).json()["lease"]
        assert (await report(c, first, "fail", error="flaky", retryable=True)).status_code == 200
        second = (await claim(c)).json()["lease"]
        assert second["dispatch_id"] == did and second["attempt"] == 2
        assert second["token"] != first["token"] and second["run_id"] != first["run_id"]
        assert (await report(c, second, "fail", error="broken", retryable=False)).status_code == 200
        final = await srv.rt.wait(did)
        assert final.status == "dead" and final.dead_reason == "discarded"
        assert final.last_error == "broken"
        runs = await srv.rt.runs(dispatch_id=did)
        assert sorted(r.status for r in runs) == ["error", "error"]


async def test_idle_timeout_retry_and_the_old_token_is_refused(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        await srv.rt.add_job(ext_job(idle_timeout=0.3))
        did = await srv.rt.enqueue("ext")
        old = (await claim(c)).json()["lease"]
        assert old["idle_timeout"] == 0.3
        # no renewal: the run ends timeout and the retry is offered with a new token
        new = (await claim(c, wait=10)).json()["lease"]
        assert new["attempt"] == 2 and new["token"] != old["token"]
        first = await srv.rt.run(old["run_id"])
        assert first.status == "timeout" and "idle timeout" in (first.error or "")
        late = await report(c, old, "complete", result="late")
        assert late.status_code == 409
        assert "stale" in late.json()["error"]["message"]
        assert board_stats(srv.rt)["stale"] == 1 and board_stats(srv.rt)["expired"] == 1
        assert (await report(c, new, "complete", result="fresh")).status_code == 200
        final = await srv.rt.wait(did)
        assert final.status == "done" and final.result == "fresh"
        run = await srv.rt.run(new["run_id"])
        assert run.details is not None
        notes = run.details["stale_reports"]
        assert notes[0]["run_id"] == old["run_id"] and notes[0]["report"] == "complete"


async def test_capabilities_and_agent_pinning(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv:
        await srv.rt.add_agent("a1", capabilities=["cpu"])
        await srv.rt.add_agent("a2", capabilities=["gpu"])
        await srv.rt.add_job(ext_job("gpu-job", capabilities=["gpu"]))
        did = await srv.rt.enqueue("gpu-job")
        await eventually(lambda: board_stats(srv.rt)["unclaimed"] == 1, what="the run on the board")
        assert (await srv.rt.agent("a2")).last_seen is None
        async with srv.client(AGENT) as a1, srv.client(ADMIN, agent="a2") as a2:
            # assignment chose a2 (it has gpu): a1 gets nothing, even claiming gpu
            assert (await claim(a1, wait=0, capabilities=["gpu"])).status_code == 204
            got = await claim(a2, wait=0, capabilities=["gpu"])
            assert got.status_code == 200
            lease = got.json()["lease"]
            assert lease["agent"] == "a2"
            # a registered agent that claims is alive for the registry's liveness
            assert (await srv.rt.agent("a2")).last_seen is not None
            # a1 reporting on a2's lease with a2's token: 403
            assert (await report(a1, lease, "heartbeat")).status_code == 403
            assert (await report(a2, lease, "complete", result=1)).status_code == 200
        assert (await srv.rt.wait(did)).status == "done"


async def test_capability_matching_without_assignment(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        await srv.rt.add_job(ext_job("any"))
        await srv.rt.enqueue("any")
        # a job that needs nothing: any worker, whatever it offers
        got = await claim(c, wait=1, capabilities=["whatever"])
        assert got.status_code == 200
        assert (await report(c, got.json()["lease"], "complete")).status_code == 200


async def test_long_poll_204_and_wakes_when_work_arrives(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        await srv.rt.add_job(ext_job())
        nothing = await claim(c, wait=0.2)
        assert nothing.status_code == 204
        answers: list[httpx.Response] = []

        async def poll() -> None:
            answers.append(await claim(c, wait=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await eventually(lambda: board_stats(srv.rt)["waiting"] == 1, what="a waiting claim")
            started = anyio.current_time()
            did = await srv.rt.enqueue("ext")
        assert answers[0].status_code == 200
        assert answers[0].json()["lease"]["dispatch_id"] == did
        assert anyio.current_time() - started < 10  # woke on the offer, not at wait's end
        # the wait is capped by long_poll_max: it is in the document as a bound
        assert (await report(c, answers[0].json()["lease"], "complete")).status_code == 200


async def test_long_poll_is_capped_and_ends_on_shutdown(db_path: str) -> None:
    answers: list[httpx.Response] = []
    async with serve(db_path, http={"rate_limit": 0, "long_poll_max": 120}) as srv:
        client = srv.client(AGENT)

        async def poll() -> None:
            answers.append(await claim(client, wait=120))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await eventually(lambda: board_stats(srv.rt)["waiting"] == 1, what="a waiting claim")
            await srv.rt._stop()  # what leaving the runtime does first
            await eventually(lambda: bool(answers), what="the claim to end", timeout=5)
        await client.aclose()
    assert answers[0].status_code == 204


async def test_bad_input(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        bad = await c.post("/api/v1/workers/leases/5/heartbeat", json={"token": "nope"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "token"
        other = await c.post("/api/v1/workers/leases/5/heartbeat", json={"token": "6." + "a" * 32})
        assert other.status_code == 422
        missing = await c.post("/api/v1/workers/leases/5/complete", json={"token": "5." + "a" * 32})
        assert missing.status_code == 404
        assert (await claim(c, max=2)).status_code == 422
        assert (await claim(c, capabilities=["Bad Cap!"])).status_code == 422
        assert (await c.post("/api/v1/workers/claim", json={"wat": 1})).status_code == 422
        await srv.rt.add_job(ext_job())
        did = await srv.rt.enqueue("ext")
        async with srv.client(ADMIN, agent="bad id!") as bad_agent:  # no agent id
            refused = await claim(bad_agent)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["field"] == "X-Agent-ID"
            assert "is not an agent id" in refused.json()["error"]["message"]
        lease = (await claim(c)).json()["lease"]  # it was not leased: a1 gets it
        assert lease["dispatch_id"] == did and lease["agent"] == "a1"
        assert (await report(c, lease, "complete")).status_code == 200
        async with srv.client(None) as anon:
            assert (await claim(anon)).status_code == 401
        from tests.http_helpers import READ

        async with srv.client(READ) as reader:
            assert (await claim(reader)).status_code == 403


async def test_a_result_nested_too_deeply_is_422_and_the_lease_holds(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        await srv.rt.add_job(ext_job())
        did = await srv.rt.enqueue("ext")
        lease = (await claim(c)).json()["lease"]
        url = f"/api/v1/workers/leases/{lease['run_id']}/complete"
        for levels in (MAX_DEPTH + 1, 950):  # past the bound; far past it (was: 200)
            result = "[" * levels + "]" * levels
            body = f'{{"token": "{lease["token"]}", "result": {result}}}'
            got = await c.post(url, content=body, headers={"content-type": "application/json"})
            assert got.status_code == 422, got.text
            error = got.json()["error"]
            assert TOO_DEEP in error["message"]
            # named, unless the decoder's own limit (stack depth) refused the body first
            assert error.get("field", "result[0]").startswith("result[0]"), error
        assert (await srv.rt.dispatch(did)).status == "running"  # nothing stored
        done = await report(c, lease, "complete", result=nested_list(MAX_DEPTH))
        assert done.status_code == 200, done.text
        assert (await srv.rt.wait(did)).result == nested_list(MAX_DEPTH)


async def test_worker_client_heartbeats_and_lease_lost(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv:
        await srv.rt.add_job(ext_job(idle_timeout=1.5))
        did = await srv.rt.enqueue("ext", {"x": 1})
        async with WorkerClient(srv.url, token=AGENT, agent="a1") as client:
            async for lease in client.leases(wait=5):
                assert lease.payload == {"x": 1}
                # longer than idle_timeout: the client's heartbeats keep it alive
                await eventually(
                    lambda: srv.rt.executors["external"].board.counts["renewed"] >= 2,
                    what="heartbeats",
                )
                await lease.progress(50)
                await lease.complete({"ok": True})
                break
            assert (await srv.rt.wait(did)).status == "done"
            # a stale report through the client raises LeaseLost
            with pytest.raises(LeaseLost):
                await lease.complete({"again": True})


async def test_rest_client_leases(db_path: str) -> None:
    from shepherd.runtime.client import Client

    async with serve(db_path, http=NO_LIMIT) as srv:
        await srv.rt.add_job(ext_job())
        did = await srv.rt.enqueue("ext", {"via": "Client"})
        async with Client(srv.url, token=AGENT, agent="a1") as c, c.leases(wait=5) as leases:
            async for lease in leases:
                assert lease.payload == {"via": "Client"}
                await lease.complete("done")
                break
        final = await srv.rt.wait(did)
        assert final.status == "done" and final.result == "done"


async def test_lease_events_on_the_stream(db_path: str) -> None:
    import json

    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(ADMIN) as watcher:
        await srv.rt.add_job(ext_job())
        seen: list[dict[str, Any]] = []
        async with srv.client(AGENT) as c, anyio.create_task_group() as tg:

            async def watch() -> None:
                async with watcher.stream("GET", "/api/v1/events", params={"kind": "lease"}) as s:
                    async for line in s.aiter_lines():
                        if line.startswith("data: "):
                            seen.append(json.loads(line[6:]))
                            if seen[-1]["event"] == "stale":
                                return

            tg.start_soon(watch)
            await eventually(lambda: _subscribed(srv.rt) == 1, what="a subscriber")
            await srv.rt.enqueue("ext")
            lease = (await claim(c)).json()["lease"]
            assert (await report(c, lease, "complete", result=1)).status_code == 200
            assert (await report(c, lease, "complete", result=2)).status_code == 409
            await eventually(lambda: seen and seen[-1]["event"] == "stale", what="stale")
        events = [e["event"] for e in seen]
        assert events == ["claimed", "completed", "stale"]
        assert all(e["run_id"] == lease["run_id"] and e["kind"] == "lease" for e in seen)
        assert seen[0]["agent"] == "a1" and seen[0]["job"] == "ext"


def _subscribed(rt: Any) -> int:
    stream = rt.asgi_app.state.http.state["events"]
    count: int = stream.statistics()["subscribers"]
    return count


async def test_stop_gives_an_unclaimed_run_back(db_path: str) -> None:
    async with serve(db_path, http=NO_LIMIT) as srv:
        await srv.rt.add_job(ext_job())  # at-most-once
        did = await srv.rt.enqueue("ext", {"k": 1})
        await eventually(lambda: board_stats(srv.rt)["unclaimed"] == 1, what="the offer")
        started = anyio.current_time()
    assert anyio.current_time() - started < 10  # not shutdown_grace (30 s)
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        lease = (await claim(c)).json()["lease"]
        assert lease["dispatch_id"] == did and lease["attempt"] == 1  # the attempt refunded
        assert (await report(c, lease, "complete", result="ok")).status_code == 200
        assert (await srv.rt.wait(did)).status == "done"


async def test_a_claimed_run_waits_out_the_grace_on_stop_not_its_idle_timeout(
    db_path: str,
) -> None:
    """The API stops first, so no worker can renew a lease while the daemon stops: a
    claimed run is kept alive for ``shutdown_grace`` (longer than its idle timeout
    here) and then cancelled with its delivery guarantee (at-most-once: ``cancelled``),
    never timed out for the renewals nobody could send."""
    async with serve(db_path, http=NO_LIMIT, shutdown_grace=1.5) as srv, srv.client(AGENT) as c:
        await srv.rt.add_job(ext_job(idle_timeout=0.5))  # at-most-once
        did = await srv.rt.enqueue("ext")
        assert (await claim(c)).status_code == 200
        started = anyio.current_time()
    assert anyio.current_time() - started >= 1.4  # the grace was waited out
    async with serve(db_path, http=NO_LIMIT) as srv:
        final = await srv.rt.dispatch(did)
        [run] = await srv.rt.runs(dispatch_id=did)
    assert (run.status, final.status) == ("cancelled", "cancelled"), (run, final)


async def test_stop_gives_an_unclaimed_run_back_once(db_path: str) -> None:
    """Given back at the stop, an unclaimed run is not admitted again while the daemon
    stops (it would be offered, given back, admitted again, until the drain): one run."""
    async with serve(db_path, http=NO_LIMIT) as srv:
        await srv.rt.add_job(ext_job())
        did = await srv.rt.enqueue("ext")
        await eventually(lambda: board_stats(srv.rt)["unclaimed"] == 1, what="the offer")
    async with serve(db_path, http=NO_LIMIT) as srv:
        given_back = [r for r in await srv.rt.runs(dispatch_id=did) if r.status != "running"]
        assert [(r.status, r.reason) for r in given_back] == [("error", "deferred")], given_back


async def test_a_claim_keeps_a_degraded_agent_degraded(db_path: str) -> None:
    """A worker's claims and reports tell the registry it is alive (an offline agent is
    ready again), but not that its runs stopped failing: a degraded agent stays so, its
    failures standing, until a heartbeat of its own; meanwhile it claims nothing."""
    from shepherd.store.ops import AgentState

    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        rt = srv.rt
        await rt.add_agent("a1", max_concurrent=4)
        await rt._agents_api._state(AgentState(id="a1", status="degraded", failures=5))
        await rt.add_job(ext_job())
        await rt.enqueue("ext")
        assert (await claim(c, wait=0)).status_code == 204  # degraded: nothing new
        a1 = await rt.agent("a1")
        assert (a1.status, a1.failures) == ("degraded", 5) and a1.last_seen is not None
        await rt._agents_api._state(AgentState(id="a1", status="offline"))
        await rt.agent_seen("a1")  # what a claim or report notes
        assert (await rt.agent("a1")).status == "ready"


async def test_a_claim_keeps_to_the_agents_max_concurrent(db_path: str) -> None:
    """A worker that is a registered agent claims no more runs than its
    ``max_concurrent``: at its limit a claim gets nothing; once a run ends, it claims
    the next."""
    async with serve(db_path, http=NO_LIMIT) as srv, srv.client(AGENT) as c:
        rt = srv.rt
        await rt.add_agent("a1", max_concurrent=1)
        await rt.add_job(ext_job())
        await rt.enqueue("ext")
        await rt.enqueue("ext")
        first = (await claim(c)).json()["lease"]
        await eventually(lambda: _running_of(rt, "a1") == 1, what="the claim counted")
        assert (await claim(c, wait=0)).status_code == 204  # at its limit
        assert (await report(c, first, "complete", result=1)).status_code == 200
        await eventually(lambda: _running_of(rt, "a1") == 0, what="the slot freed")
        second = await claim(c)
        assert second.status_code == 200 and second.json()["lease"]["run_id"] != first["run_id"]


def _running_of(rt: Any, agent: str) -> int:
    slot = rt._actors["dispatcher"]._admission.agents.get(agent)
    return int(slot.running) if slot is not None else -1
