"""The message router actor: deliveries to real sinks with durable retries, expiry.

A real store (SQLite and PostgreSQL) and store writer, the real gateway stand-in for
webhooks and the gateway sink, and a fake clock for every wait between attempts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from shepherd.actors.executors.gateway import GatewayConfig, HttpClient
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Address, Mailbox, ask
from shepherd.actors.router import Announce, Reload, Router, RouterMsg, SinkFn, Stop
from shepherd.actors.router.delivery import DeliveryConfig, DeliveryTarget
from shepherd.actors.writer import StoreMsg, StoreWriter, write
from shepherd.store.factory import open_store
from shepherd.store.models import Delivery, Seconds
from shepherd.store.ops import (
    InsertDeliveries,
    InsertMessages,
    NewDelivery,
    NewMessage,
    RequeueDeliveries,
)
from shepherd.store.protocol import Store
from tests.gateway_standin import StandIn
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


class Harness:
    def __init__(
        self,
        store: Store,
        router: Router,
        addr: Address[RouterMsg],
        writer: Address[StoreMsg],
        clock: FakeClock,
    ) -> None:
        self.store, self.router, self.addr, self.writer, self.clock = (
            store,
            router,
            addr,
            writer,
            clock,
        )

    async def announce(self, body: str, to: str | None = "@ops", channel: str | None = None) -> int:
        return await ask(
            self.addr,
            lambda r: Announce(
                body=body, to=to, channel=channel, kind="api", reply=r, job="nightly"
            ),
        )

    async def delivery(self, delivery_id: int) -> Delivery:
        d = await self.store.delivery(delivery_id)
        assert d is not None
        return d

    async def wait_attempts(self, delivery_id: int, n: int, status: str) -> Delivery:
        async def done() -> bool:
            d = await self.delivery(delivery_id)
            return d.attempts == n and d.status == status

        await eventually(done, what=f"delivery {delivery_id}: {n} attempts, {status}")
        return await self.delivery(delivery_id)


@asynccontextmanager
async def harness(
    db_path: str,
    cfg: DeliveryConfig,
    *,
    sinks: dict[str, SinkFn] | None = None,
    gateway: GatewayConfig | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[Harness]:
    clock = clock or FakeClock()
    store = await open_store(db_path)
    writer_mb: Mailbox[StoreMsg] = Mailbox("store", 1000)
    router_mb: Mailbox[RouterMsg] = Mailbox("router", 1000)
    http = HttpClient()
    router = Router(
        cfg,
        store=store,
        writer=writer_mb.address(),
        mailbox=router_mb,
        clock=clock,
        sinks=sinks if sinks is not None else {},
        http=http,
        gateway=gateway,
    )
    addr = router_mb.address()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(StoreWriter(store, writer_mb).run)
            await tg.start(router.run)
            yield Harness(store, router, addr, writer_mb.address(), clock)
            addr.tell(Stop())
            await clock.wait_idle()
            tg.cancel_scope.cancel()
    finally:
        await http.aclose()
        await store.close()


def config(gw: StandIn, **kw: Any) -> DeliveryConfig:
    kw.setdefault("webhooks", {"hook": gw.url + "/webhook"})
    kw.setdefault("aliases", {"ops": DeliveryTarget(channel="hook", target="C-1")})
    kw.setdefault("retry_base", Seconds(5.0))
    return DeliveryConfig(**kw)


async def test_webhook_fails_twice_then_succeeds(db_path: str, gw: StandIn) -> None:
    gw.set_mode(webhook_fail_first=2)
    async with harness(db_path, config(gw)) as h:
        t0 = h.clock.wall()
        delivery_id = await h.announce("disk at 91%")
        d = await h.wait_attempts(delivery_id, 1, "pending")
        assert d.last_error == 'HTTP 500: {"ok":false,"attempt":1}'
        assert d.next_attempt_at == t0 + 5.0
        await h.clock.advance_when_blocked(4.9)
        assert (await h.delivery(delivery_id)).attempts == 1  # not before its time
        await h.clock.advance_when_blocked(0.1)
        d = await h.wait_attempts(delivery_id, 2, "pending")  # the POST is real I/O
        assert d.next_attempt_at == t0 + 5.0 + 10.0  # doubled
        await h.clock.advance_when_blocked(10.0)
        d = await h.wait_attempts(delivery_id, 3, "sent")
        assert (d.sink, d.channel, d.target, d.sent_at) == ("hook", "hook", "C-1", t0 + 15.0)
        posts = [r.json for r in gw.requests if r.path == "/webhook"]
        assert [p["attempt"] for p in posts] == [1, 2, 3]
        assert posts[-1]["text"] == "disk at 91%" and posts[-1]["to"] == "C-1"
        assert h.router.statistics()["sent"] == 1


async def test_callback_sink_gets_the_delivery_and_a_raise_is_retried(
    db_path: str, gw: StandIn
) -> None:
    got: list[Delivery] = []

    async def sink(d: Delivery) -> None:
        got.append(d)
        if len(got) == 1:
            raise RuntimeError("telegram said 502")

    cfg = config(gw, aliases={"ops": DeliveryTarget(channel="tg", target="@me")})
    async with harness(db_path, cfg, sinks={"tg": sink}) as h:
        delivery_id = await h.announce("hello")
        d = await h.wait_attempts(delivery_id, 1, "pending")
        assert d.last_error == "RuntimeError: telegram said 502"
        await h.clock.advance_when_blocked(5.0)
        await h.wait_attempts(delivery_id, 2, "sent")
        assert [(x.body, x.channel, x.target) for x in got] == [("hello", "tg", "@me")] * 2


async def test_gateway_is_the_default_sink(db_path: str, gw: StandIn) -> None:
    cfg = config(gw, aliases={"ops": DeliveryTarget(channel="telegram", target="-100")})
    async with harness(db_path, cfg, gateway=GatewayConfig(url=gw.url, token="t")) as h:
        delivery_id = await h.announce("build broke")
        d = await h.wait_attempts(delivery_id, 1, "sent")
        assert d.sink == "gateway"
    [req] = [r for r in gw.requests if r.path == "/v1/system-event"]
    assert req.json == {"text": "build broke", "mode": "now", "channel": "telegram", "to": "-100"}
    assert req.headers["authorization"] == "Bearer t"


async def test_gives_up_after_max_attempts_and_an_operator_can_requeue(
    db_path: str, gw: StandIn
) -> None:
    sinks: dict[str, SinkFn] = {}
    cfg = config(gw, max_attempts=2, default_sink="later")
    async with harness(db_path, cfg, sinks=sinks) as h:
        delivery_id = await h.announce("x", to="someone", channel="nowhere")
        d = await h.wait_attempts(delivery_id, 1, "pending")
        assert d.last_error == "no delivery sink for channel 'nowhere'"
        await h.clock.advance_when_blocked(5.0)
        d = await h.wait_attempts(delivery_id, 2, "failed")
        assert [f.id for f in await h.store.deliveries(status="failed")] == [delivery_id]
        got: list[str] = []

        async def later(delivery: Delivery) -> None:
            got.append(delivery.body)

        sinks["later"] = later
        assert await write(h.writer, RequeueDeliveries([delivery_id], h.clock.wall())) == [
            delivery_id
        ]
        h.addr.tell(Reload())
        await h.wait_attempts(delivery_id, 3, "sent")
        assert got == ["x"]


async def test_pending_deliveries_survive_a_restart(db_path: str, gw: StandIn) -> None:
    clock = FakeClock()
    store = await open_store(db_path)
    try:
        [delivery_id] = await store.apply(
            [
                InsertDeliveries(
                    [
                        NewDelivery(
                            kind="announce",
                            body="left over",
                            channel="hook",
                            target="C",
                            max_attempts=3,
                            next_attempt_at=clock.wall(),
                        )
                    ],
                    clock.wall(),
                )
            ]
        )
    finally:
        await store.close()
    async with harness(db_path, config(gw), clock=clock) as h:
        await h.wait_attempts(delivery_id[0], 1, "sent")
    assert [r.json["text"] for r in gw.requests] == ["left over"]


async def test_expired_messages_are_swept(db_path: str, gw: StandIn) -> None:
    async with harness(db_path, config(gw, expire_interval=Seconds(15.0))) as h:
        now = h.clock.wall()
        rows = [
            NewMessage(from_agent="a", to_agent="main", body="soon", expires_at=now + 10),
            NewMessage(from_agent="a", to_agent="main", body="stays"),
        ]
        ids = await write(h.writer, InsertMessages(rows, now))
        assert [m.body for m in await h.store.inbox("main")] == ["soon", "stays"]
        # the router's first sweep (a store round trip) arms the next one before time moves
        await h.clock.advance_when_blocked(16.0)
        msgs = await h.store.messages(status="expired")
        assert [m.id for m in msgs] == [ids[0]]
        assert h.router.statistics()["expired"] == 1
        assert [m.body for m in await h.store.inbox("main")] == ["stays"]
