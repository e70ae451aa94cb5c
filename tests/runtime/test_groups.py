"""Task groups (OCS's task tracker, a dead-man switch) through the public API, with a
fake clock for the timeouts: reports, heartbeats, dead members, the summary delivered
exactly once, and the bad-input matrix (error names the field, nothing stored)."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.actors.router.delivery import DeliveryConfig, DeliveryTarget
from shepherd.runtime import Config, ConfigError, NotFound, Runtime
from shepherd.store.factory import open_store
from shepherd.store.models import Delivery
from shepherd.store.ops.groups import member_deadline, summary_text
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]


class Sink:
    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def __call__(self, d: Delivery) -> None:
        self.got.append(d)


def _cfg(db_path: str) -> Config:
    delivery = DeliveryConfig(
        aliases={"ops": DeliveryTarget(channel="chat", target="room-1")}, default_sink="chat"
    )
    return Config(database=db_path, shutdown_grace=0, delivery=delivery)


async def _stored(db_path: str) -> tuple[list[Delivery], int]:
    """Every delivery in the database and how many task groups it holds."""
    store = await open_store(db_path)
    try:
        return await store.deliveries(limit=10_000), len(await store.task_groups())
    finally:
        await store.close()


async def test_reports_end_the_group_and_the_summary_goes_out_once(db_path: str) -> None:
    clock, sink = FakeClock(), Sink()
    async with Runtime.open(_cfg(db_path), clock=clock) as rt:
        rt.register_delivery_sink("chat", sink)
        g = await rt.create_group("fan", ["a", "b", "c"], timeout=600, to="@ops")
        assert [m.status for m in g.members] == ["pending"] * 3
        assert g.heartbeat_window == 300  # OCS: min(timeout, 300 s)
        await rt.report("fan", "a", "started")
        await rt.report("fan", "a", "completed", message="12 files")
        await rt.report(g.id, "b", "failed", message="disk full")
        assert (await rt.group("fan")).status == "open"
        await clock.advance_when_blocked(599)
        assert (await rt.group("fan")).members[2].status == "pending"
        await clock.advance_when_blocked(1)  # c: past the timeout, never heartbeated
        done = await rt.group("fan")
        assert done.status == "failed"
        assert [m.status for m in done.members] == ["completed", "failed", "dead"]
        await eventually(lambda: sink.got, what="the summary")
        await clock.advance_when_blocked(3600)
        assert len(sink.got) == 1
        assert sink.got[0].body == (
            "Task group fan failed: 1/3 ok\n[ok] a: 12 files\n[FAILED] b: disk full\n"
            "[DEAD] c: timed out"
        )
        assert (sink.got[0].channel, sink.got[0].target) == ("chat", "room-1")
        assert done.summary == sink.got[0].body and done.delivery_id == sink.got[0].id
        with pytest.raises(ConfigError) as err:
            await rt.report("fan", "c", "completed")
        assert err.value.field == "member"
    deliveries, _ = await _stored(db_path)
    assert [d.kind for d in deliveries].count("group") == 1


async def test_heartbeats_keep_a_member_alive_past_the_timeout(db_path: str) -> None:
    clock = FakeClock()
    async with Runtime.open(_cfg(db_path), clock=clock) as rt:
        await rt.create_group("hb", ["w"], timeout=60, heartbeat_window=30)
        await rt.report("hb", "w", "started")
        for _ in range(4):  # beats every 25 s keep it alive well past 60 s
            await clock.advance_when_blocked(25)
            await rt.heartbeat("hb", "w")
        assert (await rt.group("hb")).members[0].status == "started"
        await clock.advance_when_blocked(29)
        assert (await rt.group("hb")).members[0].status == "started"
        await clock.advance_when_blocked(1)  # 30 s silent, past the timeout: dead
        g = await rt.group("hb")
        assert g.members[0].status == "dead" and g.status == "failed"
        assert g.summary is not None and "[DEAD] w: timed out" in g.summary
        assert g.delivery_id is None  # no target: the summary stays on the group


async def test_all_completed_is_completed_and_the_name_is_free_again(db_path: str) -> None:
    clock = FakeClock()
    async with Runtime.open(_cfg(db_path), clock=clock) as rt:
        g = await rt.create_group("ok", ["x", "y"], channel="chat")
        await rt.report("ok", "x", "completed")
        await rt.report("ok", "y", "completed", message="fine")
        g = await rt.group(g.id)
        assert g.status == "completed" and g.delivery_id is not None
        assert g.summary == "Task group ok completed: 2/2 ok\n[ok] x: completed\n[ok] y: fine"
        again = await rt.create_group("ok", ["x"])
        assert again.id != g.id and (await rt.group("ok")).id == again.id
        assert [x.name for x in await rt.groups(status="completed")] == ["ok"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"members": []}, "members"),
        ({"members": ["a", "b", "a"]}, "members[2]"),
        ({"members": ["ok", "bad label"]}, "members[1]"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 10**9}, "timeout"),
        ({"heartbeat_window": 0.5}, "heartbeat_window"),
        ({"name": "has space"}, "name"),
        ({"name": "123"}, "name"),
        ({"to": " "}, "to"),
    ],
)
async def test_bad_group_fields_name_the_field_and_store_nothing(
    db_path: str, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"name": "g", "members": ["a"], **kwargs}
    async with Runtime.open(_cfg(db_path), clock=FakeClock()) as rt:
        with pytest.raises(ConfigError) as err:
            await rt.create_group(args.pop("name"), args.pop("members"), **args)
        assert err.value.field == field
    assert (await _stored(db_path))[1] == 0


async def test_bad_reports_name_the_field_and_change_nothing(db_path: str) -> None:
    async with Runtime.open(_cfg(db_path), clock=FakeClock()) as rt:
        await rt.create_group("g", ["a"])
        with pytest.raises(NotFound):
            await rt.report("nope", "a", "started")
        for member, status, field in (("zz", "started", "member"), ("a", "done", "status")):
            with pytest.raises(ConfigError) as err:
                await rt.report("g", member, status)
            assert err.value.field == field
        with pytest.raises(ConfigError) as err:
            await rt.create_group("g", ["b"])  # one open group per name
        assert err.value.field == "name"
        g = await rt.group("g")
        assert [(m.status, m.last_heartbeat) for m in g.members] == [("pending", None)]


def test_the_rules_are_pure_functions() -> None:
    from shepherd.store.models import GroupMember, TaskGroup

    g = TaskGroup(
        id=1, name="g", status="open", timeout=600, heartbeat_window=300, created_at=0,
        updated_at=0,
    )  # fmt: skip
    assert member_deadline(g, GroupMember(label="a", status="pending")) == 600
    assert member_deadline(g, GroupMember(label="a", status="started", last_heartbeat=500)) == 800
    assert member_deadline(g, GroupMember(label="a", status="failed")) is None
    assert summary_text("g", "completed", []) == "Task group g completed: 0/0 ok"


async def test_members_silent_while_no_runtime_ran_die_at_the_next_start(db_path: str) -> None:
    clock, sink = FakeClock(), Sink()
    async with Runtime.open(_cfg(db_path), clock=clock) as rt:
        await rt.create_group("down", ["a", "b"], timeout=60, to="@ops")
        await rt.report("down", "a", "completed")
    clock.jump_wall(3600)  # an hour with no runtime
    async with Runtime.open(_cfg(db_path), clock=clock) as rt:
        rt.register_delivery_sink("chat", sink)
        # the summary may be tried during the start, before the sink is registered: that
        # attempt fails ("no delivery sink") and its retry, a few seconds on, reaches it
        await clock.advance_when_blocked(60)
        await eventually(lambda: sink.got, what="the summary after the restart")
        g = await rt.group("down")
        assert [m.status for m in g.members] == ["completed", "dead"]
        await clock.advance_when_blocked(60)
    async with Runtime.open(_cfg(db_path), clock=clock) as rt:  # and never again
        rt.register_delivery_sink("chat", sink)
        await clock.advance_when_blocked(60)
    assert len(sink.got) == 1
    assert len((await _stored(db_path))[0]) == 1
