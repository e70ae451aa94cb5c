"""The agent executor against the real gateway stand-in (HTTP over 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shepherd.actors.executors.agent import AgentExecutor
from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.store.errors import ConfigError, Deferred
from shepherd.store.models import JobSpec, Message, Run
from tests.actors.executors.conftest import Beats, FakeHost, make_ctx
from tests.gateway_standin import StandIn

pytestmark = pytest.mark.anyio
CHAT = "/v1/chat/completions"


def agent_job(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "name": "daily-report",
        "executor": "agent",
        "target": "ops",
        "payload": {"message": "Write the daily report."},
    }
    base.update(kw)
    return JobSpec(**base)


@pytest.fixture
async def agent(gw: StandIn) -> AsyncIterator[AgentExecutor]:
    ex = AgentExecutor(GatewayConfig(url=gw.url, token="s3cret", defer=42.0))
    try:
        yield ex
    finally:
        await ex.aclose()


def message(i: int, body: str = "hello", to: str = "ops", kind: str = "text") -> Message:
    return Message(
        id=i,
        from_agent="lead",
        to_agent=to,
        kind=kind,
        subject=f"s{i}",
        body=body,
        priority=0,
        status="pending",
        created_at=float(i),
    )


async def test_normal_reply_streams_and_records_the_turn(gw: StandIn, agent: AgentExecutor) -> None:
    gw.set_mode(reply="All systems nominal today")
    beats = Beats()
    ctx = make_ctx(agent_job(options={"auth_profile": "work"}), beats=beats)
    res = await agent.execute(ctx)
    assert res.ok and res.deliver
    assert res.result == {"summary": "All systems nominal today"}
    [req] = gw.requests
    assert req.path == CHAT
    assert req.headers["x-openclaw-agent-id"] == "ops"
    assert req.headers["x-openclaw-session-key"] == "scheduler:7"
    assert req.headers["x-openclaw-auth-profile"] == "work"
    assert req.headers["authorization"] == "Bearer s3cret"
    assert req.json["model"] == "openclaw:ops"
    assert req.json["stream"] is True
    prompt = req.json["messages"][0]["content"]
    assert prompt.startswith("[scheduler:7 daily-report]")
    assert prompt.endswith("Write the daily report.")
    assert res.details["chunks"] >= 4  # role chunk + one per word + finish
    assert beats.count >= res.details["chunks"]  # every chunk was activity
    details = ctx.reported["details"]
    assert details["prompt"] == prompt
    assert details["context"]["model"] == "openclaw:ops"
    assert details["context"]["sections"] == ["header", "message"]


async def test_model_session_and_agent_can_be_overridden(gw: StandIn, agent: AgentExecutor) -> None:
    job = agent_job(options={"model": "anthropic/opus", "session_key": "team:7"})
    await agent.execute(make_ctx(job))
    await agent.execute(
        make_ctx(
            job, payload={"message": "hi", "agent": "main", "session_key": "x:1", "model": "m2"}
        )
    )
    first, second = gw.requests
    assert first.json["model"] == "anthropic/opus"
    assert first.headers["x-openclaw-session-key"] == "team:7"
    assert (
        second.json["model"],
        second.headers["x-openclaw-agent-id"],
        second.headers["x-openclaw-session-key"],
    ) == ("m2", "main", "x:1")
    assert second.json["messages"][0]["content"].endswith("\nhi")


async def test_inbox_messages_are_injected_and_marked_delivered(
    gw: StandIn, agent: AgentExecutor
) -> None:
    host = FakeHost(
        inbox=[message(i, body=f"note {i}") for i in range(1, 8)] + [message(99, to="someone-else")]
    )
    ctx = make_ctx(agent_job(), host=host)
    res = await agent.execute(ctx)
    assert res.ok
    prompt = gw.requests[0].json["messages"][0]["content"]
    assert "--- Pending Messages ---" in prompt
    assert [f"note {i}" in prompt for i in range(1, 8)] == [True] * 5 + [False] * 2
    assert host.delivered == [1, 2, 3, 4, 5]
    context = ctx.reported["details"]["context"]
    assert (context["messages_injected"], context["message_ids"]) == (5, [1, 2, 3, 4, 5])


async def test_a_refused_turn_leaves_the_inbox_pending(gw: StandIn, agent: AgentExecutor) -> None:
    gw.set_mode(status=400)
    host = FakeHost(inbox=[message(1)])
    res = await agent.execute(make_ctx(agent_job(), host=host))
    assert not res.ok
    assert host.delivered == []


async def test_trigger_context_and_idempotency_key(gw: StandIn, agent: AgentExecutor) -> None:
    parent = Run(
        id=41,
        dispatch_id=1,
        job_id=3,
        job_name="fetch",
        attempt=1,
        status="ok",
        started_at=0.0,
        result={"summary": "fetched 12 rows"},
    )
    host = FakeHost(runs=[parent])
    job = agent_job(delivery_guarantee="at-least-once")
    ctx = make_ctx(job, host=host, parent_run_id=41, idempotency_key="k-9")
    await agent.execute(ctx)
    prompt = gw.requests[0].json["messages"][0]["content"]
    assert "--- Trigger Context ---\nTriggered by: fetch\nParent run status: ok" in prompt
    assert "fetched 12 rows" in prompt
    assert "[IDEMPOTENCY KEY: k-9]" in prompt
    trigger = ctx.reported["details"]["context"]["trigger"]
    assert trigger == {"parent_run_id": 41, "parent_job": "fetch", "parent_status": "ok"}
    await agent.execute(make_ctx(job, host=host, parent_run_id=404))
    assert "Trigger Context" not in gw.requests[1].json["messages"][0]["content"]


@pytest.mark.parametrize(
    "reply", ["HEARTBEAT_OK", "NO_FLUSH: nothing new", "IDEMPOTENT_SKIP already done"]
)
async def test_ok_sentinels_suppress_delivery(
    gw: StandIn, agent: AgentExecutor, reply: str
) -> None:
    gw.set_mode(reply=reply)
    res = await agent.execute(make_ctx(agent_job()))
    assert res.ok and not res.deliver
    assert res.details["sentinel"] == reply.split()[0].rstrip(":")


async def test_task_failed_is_a_retryable_error(gw: StandIn, agent: AgentExecutor) -> None:
    gw.set_mode(reply="TASK_FAILED: the database is locked")
    res = await agent.execute(make_ctx(agent_job()))
    assert not res.ok and res.retry and res.deliver
    assert res.error == "Agent signalled TASK_FAILED"
    assert res.result == {"summary": "TASK_FAILED: the database is locked"}


async def test_transient_phrase_only_counts_in_the_first_500_chars(
    gw: StandIn, agent: AgentExecutor
) -> None:
    gw.set_mode(reply="Sorry: rate limit exceeded, please retry later")
    res = await agent.execute(make_ctx(agent_job()))
    assert (res.ok, res.retry, res.error) == (False, True, "Transient error in agent reply")
    gw.set_mode(reply="word " * 120 + "and then we hit a rate limit upstream")
    res = await agent.execute(make_ctx(agent_job()))
    assert res.ok and res.deliver


async def test_a_draining_gateway_defers(gw: StandIn, agent: AgentExecutor) -> None:
    gw.set_mode(reply="Gateway is draining for restart; new tasks are not accepted")
    with pytest.raises(Deferred) as info:
        await agent.execute(make_ctx(agent_job()))
    assert info.value.seconds == 90.0


@pytest.mark.parametrize(
    ("status", "words", "gateway_failure"),
    [
        (500, "gateway failed the agent turn (HTTP 500: stand-in error 500)", True),
        (400, "gateway rejected the agent turn (HTTP 400: stand-in error 400)", False),
        (401, "gateway rejected the agent turn (HTTP 401: stand-in error 401)", False),
        (429, "gateway rate-limited the agent turn (HTTP 429: stand-in error 429)", False),
    ],
)
async def test_http_errors_are_clear_run_errors(
    gw: StandIn, agent: AgentExecutor, status: int, words: str, gateway_failure: bool
) -> None:
    gw.set_mode(status=status)
    res = await agent.execute(make_ctx(agent_job()))
    assert not res.ok and res.retry
    assert res.error == words
    assert bool(res.details.get("gateway_failure")) is gateway_failure


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_down_statuses_defer(gw: StandIn, agent: AgentExecutor, status: int) -> None:
    gw.set_mode(status=status)
    with pytest.raises(Deferred) as info:
        await agent.execute(make_ctx(agent_job()))
    assert info.value.seconds == 42.0
    assert f"HTTP {status}" in str(info.value)
    assert agent.healthy is False


async def test_non_json_reply_is_a_clear_error(gw: StandIn, agent: AgentExecutor) -> None:
    gw.set_mode(raw_body="<html>hello</html>", status=200)
    res = await agent.execute(make_ctx(agent_job(options={"stream": False})))
    assert not res.ok
    assert (
        res.error == "gateway returned a non-JSON reply (text/html; charset=utf-8): "
        "'<html>hello</html>'"
    )
    gw.set_mode(raw_body="<html>502 Bad Gateway</html>", status=502)
    with pytest.raises(Deferred):
        await agent.execute(make_ctx(agent_job()))


async def test_plain_json_reply_when_not_streaming(gw: StandIn, agent: AgentExecutor) -> None:
    gw.set_mode(reply="done", trickle=(0.01, 4))
    beats = Beats()
    res = await agent.execute(make_ctx(agent_job(options={"stream": False}), beats=beats))
    assert res.ok and res.result == {"summary": "done"}
    assert gw.requests[0].json["stream"] is False
    assert res.details["chunks"] >= 2 and beats.count >= res.details["chunks"]


async def test_summary_is_the_first_5000_chars(gw: StandIn, agent: AgentExecutor) -> None:
    gw.set_mode(reply="x" * 6000)
    res = await agent.execute(make_ctx(agent_job()))
    assert res.result == {"summary": "x" * 5000}
    assert res.details["reply_chars"] == 6000


async def test_down_defers_then_health_probe_brings_it_back(
    gw: StandIn, agent: AgentExecutor
) -> None:
    gw.set_mode(down=True)
    with pytest.raises(Deferred) as info:
        await agent.execute(make_ctx(agent_job()))
    assert "Gateway unavailable (ConnectError" in str(info.value)
    assert agent.healthy is False
    assert await agent.probe_health() is False
    with pytest.raises(Deferred, match="health probe failed"):  # no turn while known down
        await agent.execute(make_ctx(agent_job()))
    gw.set_mode(down=False)
    res = await agent.execute(make_ctx(agent_job()))  # probes first, then runs the turn
    assert res.ok and agent.healthy is True
    assert [r.path for r in gw.requests] == ["/health", CHAT]


async def test_probe_health_reads_the_health_endpoint(gw: StandIn, agent: AgentExecutor) -> None:
    assert await agent.probe_health() is True
    gw.set_mode(healthy=False)
    assert await agent.probe_health() is False
    assert await AgentExecutor(None).probe_health() is True  # no gateway: nothing is down


def test_validation_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        AgentExecutor(None).validate(agent_job())
    assert info.value.field == "executor"
    assert "agent job needs [gateway] url in config" in str(info.value)
    ex = AgentExecutor(GatewayConfig(url="http://127.0.0.1:9"))
    with pytest.raises(ConfigError) as info:
        ex.validate(agent_job(payload={}))
    assert info.value.field == "payload.message"
    with pytest.raises(ConfigError) as info:
        ex.validate(agent_job(options={"model": 3}))
    assert info.value.field == "options.model"
    with pytest.raises(ConfigError) as info:
        GatewayConfig(url="ftp://nope")
    assert info.value.field == "gateway.url"
