"""Delivery sinks on their own: which sink takes a delivery and how a failure reads.

HTTP goes to an in-process ``httpx.MockTransport``; no router, no store.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from shepherd.actors.executors.gateway import GatewayConfig, HttpClient
from shepherd.actors.router.delivery import DeliveryConfig
from shepherd.actors.router.sinks import SinkFn, Sinks, webhook_body
from shepherd.store.models import Delivery

pytestmark = pytest.mark.anyio


class MockHttp(HttpClient):
    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []
        self.status = status
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self._answer))

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, text="" if self.status < 300 else "nope")

    def get(self) -> httpx.AsyncClient:
        return self.client


@pytest.fixture
async def http() -> AsyncIterator[MockHttp]:
    client = MockHttp()
    yield client
    await client.client.aclose()


def delivery(channel: str | None) -> Delivery:
    return Delivery(
        id=4,
        kind="announce",
        status="pending",
        body="done",
        channel=channel,
        target="ops",
        attempts=1,
        max_attempts=3,
        created_at=0.0,
        updated_at=0.0,
        job_name="nightly",
        run_id=9,
    )


async def test_a_callback_sink_gets_the_delivery_and_its_failure_is_a_result(
    http: MockHttp,
) -> None:
    got: list[Delivery] = []

    async def ok(d: Delivery) -> None:
        got.append(d)

    async def boom(d: Delivery) -> None:
        raise RuntimeError("sink down")

    callbacks: dict[str, SinkFn] = {"slack": ok, "pager": boom}
    sinks = Sinks(DeliveryConfig(default_sink="slack"), callbacks, http)
    assert await sinks.send(delivery("slack")) == ("slack", None)
    assert await sinks.send(delivery(None)) == ("slack", None)  # the default sink
    assert await sinks.send(delivery("pager")) == ("pager", "RuntimeError: sink down")
    assert [d.id for d in got] == [4, 4] and sinks.names() == ["pager", "slack"]


async def test_no_sink_and_no_gateway_are_errors_not_exceptions(http: MockHttp) -> None:
    sinks = Sinks(DeliveryConfig(default_sink="nowhere"), {}, http)
    sink, error = await sinks.send(delivery(None))
    assert sink is None and error is not None and "'nowhere'" in error
    gateway_only = Sinks(DeliveryConfig(), {}, http)  # default sink: the gateway
    assert await gateway_only.send(delivery(None)) == (
        "gateway",
        "no [gateway] configured for the gateway sink",
    )
    assert http.requests == []


async def test_a_webhook_gets_the_delivery_as_json(http: MockHttp) -> None:
    cfg = DeliveryConfig(webhooks={"hook": "http://hooks.test/in"})
    sinks = Sinks(cfg, {}, http)
    assert await sinks.send(delivery("hook")) == ("hook", None)
    (request,) = http.requests
    assert str(request.url) == "http://hooks.test/in"
    body = json.loads(request.content)
    assert body == webhook_body(delivery("hook"))
    assert (body["text"], body["job"], body["attempt"]) == ("done", "nightly", 2)
    http.status = 503
    sink, error = await sinks.send(delivery("hook"))
    assert sink == "hook" and error is not None and "503" in error


async def test_the_gateway_sink_posts_text_channel_and_target(http: MockHttp) -> None:
    gw = GatewayConfig(url="http://gw.test")
    sinks = Sinks(DeliveryConfig(), {}, http, gw)
    assert await sinks.send(delivery("telegram")) == ("gateway", None)
    (request,) = http.requests
    assert str(request.url) == gw.endpoint(gw.delivery_path)
    assert json.loads(request.content) == {
        "text": "done",
        "mode": "now",
        "channel": "telegram",
        "to": "ops",
    }
