"""An agent child of a shell parent sees the parent's run in its prompt, as OCS renders
it (``--- Trigger Context ---``), through a real chain and the gateway stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.runtime import Config, JobSpec, RetryPolicy, Runtime
from tests.gateway_standin import StandIn

pytestmark = pytest.mark.anyio


def _agent_child(parent: str, on: str) -> JobSpec:
    return JobSpec(
        name="triage",
        executor="agent",
        target="main",
        payload={"message": "Look at what the build left."},
        parent=parent,
        trigger_on=on,  # type: ignore[arg-type]
        retry=RetryPolicy(max_attempts=1),
    )


async def _child_prompt(rt: Runtime) -> str:
    [c] = [d for d in await rt.dispatches(job="triage") if d.kind == "chain"]
    done = await rt.wait(c.id, timeout=15)
    assert done.status == "done", done.last_error
    [run] = await rt.runs(dispatch_id=c.id)
    return str(run.details["prompt"])


def _read(path: str) -> str:
    return Path(path).read_text()


async def test_shell_parent_failure_in_the_agent_childs_prompt(
    db_path: str, gw: StandIn, tmp_path: Path
) -> None:
    cfg = Config(database=db_path, shutdown_grace=0, gateway=GatewayConfig(url=gw.url))
    async with Runtime.open(cfg) as rt:
        await rt.add_job(
            JobSpec(
                name="build",
                executor="shell",
                target="echo compiled; echo 'link failed' >&2; exit 3",
                retry=RetryPolicy(max_attempts=1),
            )
        )
        await rt.add_job(_agent_child("build", "failure"))
        parent = await rt.wait(await rt.enqueue("build"), timeout=15)
        assert parent.status == "dead"
        prompt = await _child_prompt(rt)
    assert (
        "--- Trigger Context ---\nTriggered by: build\nParent run status: error\n"
        "Timed out: no\nExit code: 3\nError: Shell exited with code 3: link failed\n"
        "stdout:\ncompiled\nstderr:\nlink failed\n---"
    ) in prompt


async def test_offloaded_shell_output_is_named_by_its_path(
    db_path: str, gw: StandIn, tmp_path: Path
) -> None:
    cfg = Config(
        database=db_path,
        shutdown_grace=0,
        gateway=GatewayConfig(url=gw.url),
        data_dir=str(tmp_path / "data"),
    )
    async with Runtime.open(cfg) as rt:
        await rt.add_job(
            JobSpec(
                name="dump",
                executor="shell",
                target="python3 -c \"print('x' * 5000)\"",
                options={"output_offload": 1024, "output_excerpt": 128, "output_summary": 256},
            )
        )
        await rt.add_job(_agent_child("dump", "success"))
        await rt.wait(await rt.enqueue("dump"), timeout=15)
        [c] = [d for d in await rt.dispatches(job="triage") if d.kind == "chain"]
        trigger = c.payload["trigger"]
        prompt = await _child_prompt(rt)
    path = trigger["stdout_path"]
    assert _read(path).strip() == "x" * 5000
    assert "stdout" not in trigger  # the path instead of an excerpt
    assert f"Exit code: 0\nstdout offloaded: {path}\n---" in prompt
