"""Runs reach the runtime only through their typed host, never the ``Runtime`` itself."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.actors.executors.procs import ProcessId
from shepherd.runtime import Config, JobSpec, NotFound, RunContext, Runtime
from shepherd.runtime.host import RuntimeHost

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


async def test_a_run_gets_a_runtime_host_that_answers_its_questions(db_path: str) -> None:
    seen: dict[str, Any] = {}

    async def probe(ctx: RunContext) -> None:
        host = ctx.host
        assert host is not None
        seen["host"] = host
        seen["slots"] = [s for s in type(ctx).__slots__ if s != "host"]
        seen["job"] = (await host.job("probe")).name
        seen["run"] = (await host.run(ctx.run_id)).status
        seen["inbox"] = [m.body for m in await host.inbox("main", limit=5)]
        seen["marked"] = await host.mark_delivered(
            [m.id for m in await host.inbox("main", limit=5)]
        )
        await host.record_process(ctx.run_id, ProcessId(pgid=4242, start=1, clock="test"))
        for ask in (host.job("nope"), host.run(10**9)):
            with pytest.raises(NotFound):
                await ask
        await host.retire_job("nope")  # gone already: fine

    async with Runtime.open(Config(database=db_path), targets={"probe": probe}) as rt:
        await rt.send_message("ops", "main", "hello")
        await rt.add_job(JobSpec(name="probe", target="probe"))
        final = await rt.wait(await rt.enqueue("probe"), timeout=30)
        assert final.status == "done", final
        assert await rt.inbox("main") == []  # marked delivered by the run
        [run] = await rt.runs(job="probe")
        assert run.pgid == 4242  # the group recorded through the host
    host = seen["host"]
    assert isinstance(host, RuntimeHost)
    held = [*vars(host).values(), getattr(vars(host)["_retire"], "__self__", None)]
    assert not any(isinstance(v, Runtime) for v in held)
    assert "services" not in seen["slots"]
    assert seen["job"] == "probe" and seen["run"] == "running"
    assert (seen["inbox"], seen["marked"]) == (["hello"], 1)
