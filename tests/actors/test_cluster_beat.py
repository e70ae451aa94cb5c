"""The cluster actor's beat (``actors.cluster``) against a stand-in store of several
nodes: the time since the last renew is real time, as the server counts the lease, so
a fake clock moved past the lease does not fence the node, and a real gap past it (a
process paused, or cut off from its database) does, before the renew is even asked."""

from __future__ import annotations

from typing import Any, cast

import pytest

from shepherd.actors.cluster import ClusterActor, ClusterConfig, Membership
from shepherd.actors.messages import DispatcherMsg, NodeChanged
from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.primitives.mailbox import Address
from shepherd.store.cluster import NodeLease
from shepherd.store.protocol import Store

pytestmark = pytest.mark.anyio

LEASE = 15.0


class Nodes:
    """The store calls the actor makes: a live node of two that is never fenced."""

    def __init__(self) -> None:
        self.renews = 0

    async def join_node(self, node: str, **_: Any) -> NodeLease:
        return NodeLease(node=node, epoch=7, rank=0, count=2, single=False, lease=LEASE)

    async def renew_node(self, node: str, epoch: int, **_: Any) -> NodeLease:
        self.renews += 1
        return NodeLease(node=node, epoch=epoch, rank=0, count=2, single=False, lease=LEASE)

    async def rescue_nodes(self, **_: Any) -> list[Any]:
        return []


class Inbox:
    def __init__(self) -> None:
        self.told: list[DispatcherMsg] = []

    def tell(self, msg: DispatcherMsg) -> None:
        self.told.append(msg)


class Monotonic:
    """Real time as the actor reads it, moved by hand."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


async def _joined(monotonic: Monotonic) -> tuple[ClusterActor, Nodes, Inbox, FakeClock]:
    store, inbox, clock = Nodes(), Inbox(), FakeClock()
    actor = ClusterActor(
        ClusterConfig(node="n", lease=LEASE),  # type: ignore[arg-type]
        membership=Membership("n"),
        store=cast(Store, store),
        clock=clock,
        dispatcher=cast(Address[DispatcherMsg], inbox),
        monotonic=monotonic,
    )
    await actor._join()
    return actor, store, inbox, clock


def _fenced(inbox: Inbox) -> list[DispatcherMsg]:
    return [m for m in inbox.told if isinstance(m, NodeChanged) and m.fenced]


async def test_a_fake_clock_moved_past_the_lease_does_not_fence_the_node() -> None:
    monotonic = Monotonic()
    actor, store, inbox, clock = await _joined(monotonic)
    for _ in range(3):
        clock.advance(2 * LEASE)  # a test's jump: no real time went by
        monotonic.now += 0.01
        await actor.beat()
    assert store.renews == 3 and _fenced(inbox) == []
    assert actor.membership.epoch == 7


async def test_a_real_gap_past_the_lease_cancels_the_runs_before_the_renew() -> None:
    monotonic = Monotonic()
    actor, store, inbox, _ = await _joined(monotonic)
    monotonic.now += LEASE / 3
    await actor.beat()
    assert _fenced(inbox) == []
    monotonic.now += LEASE + 1.0  # paused past its lease; the fake clock never moved
    await actor.beat()
    assert len(_fenced(inbox)) == 1 and store.renews == 2
    monotonic.now += LEASE / 3  # the last renew got through: no more cancels
    await actor.beat()
    assert len(_fenced(inbox)) == 1
