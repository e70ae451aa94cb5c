"""``shepherd.runtime.client.Client`` against a real served runtime: each call's answer as
the Runtime API's own types, and the API's errors raised as shepherd's (NotFound,
Conflict, ConfigError with its field; ApiError for 401 / 403 / 429)."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd import ConfigError, Conflict, Discard, NotFound, RunContext
from shepherd.runtime.client import ApiError, Client
from shepherd.store.models import Dispatch, JobRow, Run
from tests.http_helpers import ADMIN, READ, serve

pytestmark = pytest.mark.anyio


async def ok(ctx: RunContext) -> dict[str, Any]:
    return {"got": ctx.payload}


async def dies(payload: dict[str, Any]) -> None:
    raise Discard("no")


async def test_the_client_round_trip(db_path: str) -> None:
    async with serve(db_path) as srv, Client(srv.url, token=ADMIN) as c:
        srv.rt.register("ok", ok)
        srv.rt.register("dies", dies)
        row = await c.add_job({"name": "j", "target": "ok", "timeout": "1m"})
        assert isinstance(row, JobRow) and row.spec.timeout == 60.0
        await c.add_job({"name": "d", "target": "dies"})
        assert [j.name for j in await c.jobs()] == ["d", "j"]
        assert (await c.update_job("j", priority="high")).spec.priority == "high"
        with pytest.raises(Conflict):
            await c.add_job({"name": "j", "target": "ok"})
        with pytest.raises(ConfigError) as bad:
            await c.add_job({"name": "k", "retry": {"max_attempts": 0}})
        assert bad.value.field == "retry.max_attempts"

        first = await c.enqueue("j", {"n": 1}, priority="low")
        d = await c.dispatch(first)
        assert isinstance(d, Dispatch) and d.payload == {"n": 1} and d.priority == "low"
        await srv.rt.wait(first, timeout=10)
        got = await c.enqueue_many([{"job": "j"}, {"job": "nope"}, {"job": "j", "priority": 9}])
        assert isinstance(got[0], int)
        assert isinstance(got[1], NotFound)
        assert isinstance(got[2], ConfigError) and got[2].field == "items[2].priority"
        with pytest.raises(NotFound):
            await c.enqueue("nope")
        with pytest.raises(ConfigError) as wrong:
            await c.enqueue("j", max_attempts=0)
        assert wrong.value.field == "max_attempts"
        assert isinstance(await c.run_now("j", {"now": True}), int)
        assert len(await c.next_fires("j")) == 0  # no schedule

        page = await c.dispatches(job="j", limit=2)
        assert len(page.items) == 2 and page.next_cursor is not None
        rest = await c.dispatches(job="j", limit=2, cursor=page.next_cursor)
        assert [x.id for x in page.items + rest.items] == [
            x.id for x in await srv.rt.dispatches(job="j")
        ]
        runs = await c.runs(job="j", state="ok")
        assert runs.items and all(isinstance(r, Run) for r in runs.items)
        assert (await c.run(runs.items[0].id)).id == runs.items[0].id
        assert [a.id for a in await c.attempts(runs.items[0].id)] == [runs.items[0].id]
        with pytest.raises(NotFound):
            await c.run(999999)

        doomed = [await c.enqueue("d") for _ in range(3)]
        for i in doomed:
            await srv.rt.wait(i, timeout=10)
        dead = await c.dead_letters(job="d")
        assert sorted(x.id for x in dead.items) == doomed
        assert await c.retry_dead([doomed[0]]) == [doomed[0]]
        await srv.rt.wait(doomed[0], timeout=10)
        assert await c.purge_dead([doomed[1]]) == 1
        assert await c.purge_dead(all=True) == 2
        with pytest.raises(ConfigError):
            await c.purge_dead()  # nothing chosen

        with pytest.raises(Conflict):
            await c.cancel(first)  # it ended
        status = await c.status()
        assert status["dispatches"]["dead"] == 0 and status["jobs"] == 2
        assert (await c.stats())["store"]["jobs"] == 2


async def test_approvals_and_refusals(db_path: str) -> None:
    async with serve(db_path) as srv, Client(srv.url, token=ADMIN) as c:
        srv.rt.register("ok", ok)
        gate = {"required": True}
        await c.add_job({"name": "g", "target": "ok", "approval": gate,
                         "options": {"delivery_to": "@ops"}})  # fmt: skip
        one, two = await c.enqueue("g"), await c.enqueue("g")
        pending = {a.dispatch_id: a.id for a in await c.approvals("pending")}
        assert (await c.approve(pending[one], by="alice")).resolved_by == "alice"
        with pytest.raises(Conflict) as again:
            await c.approve(pending[one])
        assert "already approved by alice" in str(again.value)
        assert (await c.reject(pending[two], "not now")).status == "rejected"
        with pytest.raises(NotFound):
            await c.approval(999999)

        async with Client(srv.url, token=READ) as reader:
            assert len(await reader.approvals()) == 2
            with pytest.raises(ApiError) as denied:
                await reader.enqueue("g")
            assert denied.value.status == 403
        async with Client(srv.url, token="wrong") as nobody:
            with pytest.raises(ApiError) as unknown:
                await nobody.status()
            assert unknown.value.status == 401
        assert (await srv.rt.stats())["dispatches"]["awaiting_approval"] == 0


async def test_rate_limited_calls_carry_retry_after(db_path: str) -> None:
    async with (
        serve(db_path, http={"rate_limit": 1, "rate_burst": 1}) as srv,
        Client(srv.url, token=ADMIN) as c,
    ):
        await c.jobs()
        with pytest.raises(ApiError) as limited:
            await c.jobs()
        assert limited.value.status == 429 and (limited.value.retry_after or 0) >= 1
