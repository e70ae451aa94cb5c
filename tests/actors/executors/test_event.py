"""The event executor against the real gateway stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shepherd.actors.executors.event import EventExecutor
from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.store.errors import ConfigError, Deferred
from shepherd.store.models import JobSpec
from tests.actors.executors.conftest import make_ctx
from tests.gateway_standin import StandIn

pytestmark = pytest.mark.anyio


def event_job(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "name": "wake",
        "executor": "event",
        "payload": {"message": "Check the build queue"},
    }
    base.update(kw)
    return JobSpec(**base)


@pytest.fixture
async def events(gw: StandIn) -> AsyncIterator[EventExecutor]:
    ex = EventExecutor(GatewayConfig(url=gw.url, token="t0k"))
    try:
        yield ex
    finally:
        await ex.aclose()


async def test_sends_the_event_and_does_not_wait_for_the_agent(
    gw: StandIn, events: EventExecutor
) -> None:
    ctx = make_ctx(event_job(options={"mode": "next-heartbeat"}))
    res = await events.execute(ctx)
    assert res.ok
    assert res.result == {"summary": "System event dispatched"}
    [req] = gw.requests
    assert req.path == "/v1/system-event"
    assert req.json == {"text": "Check the build queue", "mode": "next-heartbeat"}
    assert req.headers["authorization"] == "Bearer t0k"
    assert ctx.reported["details"]["event"] == {"mode": "next-heartbeat", "chars": 21}


async def test_payload_message_overrides_and_target_is_the_fallback(
    gw: StandIn, events: EventExecutor
) -> None:
    await events.execute(make_ctx(event_job(), payload={"message": "other"}))
    await events.execute(make_ctx(event_job(payload={}, target="from target")))
    assert [r.json["text"] for r in gw.requests] == ["other", "from target"]
    assert [r.json["mode"] for r in gw.requests] == ["now", "now"]


async def test_gateway_down_defers(gw: StandIn, events: EventExecutor) -> None:
    gw.set_mode(down=True)
    with pytest.raises(Deferred, match="Gateway unavailable"):
        await events.execute(make_ctx(event_job()))


def test_validation() -> None:
    with pytest.raises(ConfigError) as info:
        EventExecutor(None).validate(event_job())
    assert info.value.field == "executor"
    assert "event job needs [gateway] url in config" in str(info.value)
    ex = EventExecutor(GatewayConfig(url="http://127.0.0.1:9"))
    with pytest.raises(ConfigError) as info:
        ex.validate(event_job(options={"mode": "later"}))
    assert info.value.field == "options.mode"
    with pytest.raises(ConfigError) as info:
        ex.validate(event_job(payload={}))
    assert info.value.field == "payload.message"
