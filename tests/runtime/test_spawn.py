"""Spawn messages through the public API: a ``spawn`` message's body becomes a
one-shot job (removed after its run) and the message is delivered, in one
transaction; a bad body fails the message with the error, visibly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.runtime import Config, RunContext, Runtime
from shepherd.store.factory import open_store
from shepherd.store.ops import InsertMessages, NewMessage
from tests.gateway_standin import StandIn
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

RAN: list[Any] = []


async def record(ctx: RunContext) -> str:
    RAN.append(ctx.payload.get("n"))
    return "ok"


def _open(db_path: str) -> Any:
    return Runtime.open(Config(database=db_path), targets={"record": record})


async def _job_gone(rt: Runtime, name: str) -> bool:
    return name not in {j.name for j in await rt.list_jobs()}


async def test_a_spawn_message_runs_its_job_once_then_the_job_is_removed(db_path: str) -> None:
    RAN.clear()
    async with _open(db_path) as rt:
        body = json.dumps({"target": "record", "payload": {"n": 7}})
        msg_id = await rt.send_message("worker", "main", body, kind="spawn")
        msg = await rt.message(msg_id)
        assert msg.status == "delivered" and msg.last_error is None
        assert msg.metadata is not None
        spawned = msg.metadata["spawned"]
        assert spawned["job"] == f"spawned-by-worker-{msg_id}"
        final = await rt.wait(spawned["dispatch_id"])
        assert final.status == "done" and final.kind == "spawn"
        await eventually(lambda: _job_gone(rt, spawned["job"]), what="the one-shot removed")
        assert RAN == [7]


async def test_ocs_shape_shell_spawn_and_delete_after_run_false(
    db_path: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    async with _open(db_path) as rt:
        body = json.dumps({
            "name": "ocs-child", "payload_message": f"echo hi >> {out}",
            "session_target": "shell", "schedule_cron": "* * * * *", "run_timeout_ms": 5000,
            "delete_after_run": False, "delivery_mode": "bogus",
        })  # fmt: skip
        msg = await rt.message(await rt.send_message("parent", "main", body, kind="spawn"))
        assert msg.status == "delivered", msg.last_error
        assert msg.metadata is not None
        final = await rt.wait(msg.metadata["spawned"]["dispatch_id"])
        assert final.status == "done"
        assert out.read_text() == "hi\n"

        async def disabled() -> bool:
            job = await rt.get_job("ocs-child")
            return not job.spec.enabled

        await eventually(disabled, what="the one-shot disabled (kept)")
        job = await rt.get_job("ocs-child")
        assert job.spec.executor == "shell" and job.spec.timeout == 5.0
        assert job.spec.options["delivery"] == "none" and job.spec.cron is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("not json", "body"),
        ("[1, 2]", "body"),
        ('{"executor": "shell"}', "target"),
        ('{"payload_message": "  "}', "payload_message"),
        ('{"target": "record", "cron": "* * * * *"}', "cron"),
        ('{"target": "record", "retry": {"max_attempts": 0}}', "retry.max_attempts"),
        # a negative duration is refused by its field's own bound, which the error says
        ('{"target": "record", "timeout": -1}', "timeout: must be >= 1ms, got -1s"),
        ('{"target": "record", "retry": {"base": -5}}', "retry.base: must be >= 0s"),
    ],
)
async def test_a_bad_spawn_body_fails_the_message_with_the_error(
    db_path: str, body: str, error: str
) -> None:
    async with _open(db_path) as rt:
        msg = await rt.message(await rt.send_message("w", "main", body, kind="spawn"))
        assert msg.status == "failed"
        assert msg.last_error is not None and msg.last_error.startswith(error), msg.last_error
        assert [j.name for j in await rt.list_jobs()] == []
        assert await rt.dispatches() == []
        failed = await rt.inbox("main", status="failed")
        assert [m.id for m in failed] == [msg.id]


async def test_a_taken_job_name_fails_the_spawn(db_path: str) -> None:
    async with _open(db_path) as rt:
        body = json.dumps({"name": "dup", "target": "record"})
        first = await rt.message(await rt.send_message("w", "main", body, kind="spawn"))
        second = await rt.message(await rt.send_message("w", "main", body, kind="spawn"))
        assert first.status == "delivered"
        assert second.status == "failed" and "exists" in (second.last_error or "")


async def test_spawn_messages_a_foreign_writer_left_pending_are_taken_at_start(
    db_path: str,
) -> None:
    RAN.clear()
    async with _open(db_path):
        pass  # creates the schema
    store = await open_store(db_path)  # the foreign writer: rows only, no spawn op
    try:
        bodies = (json.dumps({"target": "record", "payload": {"n": 1}}), "{oops")
        rows = [
            NewMessage(from_agent="other", to_agent="main", body=b, kind="spawn") for b in bodies
        ]
        await store.apply_one(InsertMessages(rows, 0.0))
    finally:
        await store.close()
    async with _open(db_path) as rt:
        good, bad = sorted(await rt.messages(), key=lambda m: m.id)
        assert good.status == "delivered" and bad.status == "failed"
        assert bad.last_error is not None and bad.last_error.startswith("body")
        assert good.metadata is not None
        await rt.wait(good.metadata["spawned"]["dispatch_id"])
        assert RAN == [1]


async def test_a_spawned_job_with_an_approval_gate_waits_for_approval(db_path: str) -> None:
    RAN.clear()
    async with _open(db_path) as rt:
        body = json.dumps({
            "target": "record", "payload": {"n": 3}, "approval": {},
            "options": {"delivery_channel": "ops"},
        })  # fmt: skip
        msg = await rt.message(await rt.send_message("w", "main", body, kind="spawn"))
        assert msg.status == "delivered" and msg.metadata is not None
        dispatch_id = msg.metadata["spawned"]["dispatch_id"]
        assert (await rt.dispatch(dispatch_id)).status == "awaiting_approval"
        [pending] = await rt.approvals()
        await rt.approve(pending.id)
        assert (await rt.wait(dispatch_id)).status == "done"
        assert RAN == [3]


def test_ocs_spawn_shapes_map_to_executors_as_semantics_says() -> None:
    from shepherd.runtime.spawn import spawn_spec

    def spec(body: dict[str, Any], to: str = "helper") -> Any:
        return spawn_spec(json.dumps(body), from_agent="pl an", to_agent=to, now=1e9)

    s = spec({"payload_message": "summarise"})
    assert (s.executor, s.target, s.payload) == ("agent", "helper", {"message": "summarise"})
    assert s.name == "spawned-by-pl-an-{id}" and s.delete_after_run and s.timeout == 300
    assert s.options == {"delivery": "none"} and s.at is not None and s.cron is None
    assert spec({"payload_message": "x", "agent_id": "ops"}).target == "ops"
    assert spec({"payload_message": "x"}, to="").target == "main"
    assert spec({"payload_message": "x", "session_target": "main"}).executor == "event"
    assert spec({"payload_message": "x", "session_target": "weird"}).executor == "agent"
    s = spec({"payload_message": "x", "delivery_mode": "announce", "delivery_to": "@ops",
              "run_timeout_ms": 1500})  # fmt: skip
    assert s.options == {"delivery": "announce", "delivery_to": "@ops"} and s.timeout == 1.5
    assert spec({"target": "record"}).delete_after_run is True
    assert spec({"target": "record", "delete_after_run": False}).delete_after_run is False


async def test_an_ocs_isolated_spawn_runs_an_agent_turn_for_the_target_agent(
    db_path: str, gw: StandIn
) -> None:
    gw.set_mode(reply="child done")
    cfg = Config(database=db_path, gateway=GatewayConfig(url=gw.url))
    async with Runtime.open(cfg) as rt:
        body = json.dumps({"payload_message": "Check the backups.", "agent_id": "ops"})
        msg = await rt.message(await rt.send_message("main", "helper", body, kind="spawn"))
        assert msg.status == "delivered" and msg.metadata is not None
        final = await rt.wait(msg.metadata["spawned"]["dispatch_id"], timeout=10)
        assert (final.status, final.outcome) == ("done", "ok")
        [req] = gw.requests
        assert req.json["model"] == "openclaw:ops"
        assert "Check the backups." in req.json["messages"][-1]["content"]
        await eventually(lambda: _job_gone(rt, msg.metadata["spawned"]["job"]), what="removed")
    async with Runtime.open(Config(database=db_path)) as rt:  # no [gateway]: refused, visibly
        body = json.dumps({"payload_message": "Check the backups."})
        msg = await rt.message(await rt.send_message("main", "helper", body, kind="spawn"))
        assert msg.status == "failed" and "gateway" in (msg.last_error or "")
