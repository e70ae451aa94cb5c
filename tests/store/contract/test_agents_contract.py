"""Store contract: the agents registry (add / register, update, state changes, removal
as a tombstone, the dispatcher's notes) and its revs: every write takes a new, higher
rev, so a reader of the changes since its newest misses none — also when two stores
on one database write at once. Through the protocol and the op Structs only."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from shepherd.store.factory import open_store
from shepherd.store.models import AgentSpec
from shepherd.store.ops import (
    AgentNotes,
    AgentState,
    AgentStates,
    RemoveAgent,
    SaveAgent,
    UpdateAgent,
)
from shepherd.store.protocol import Store
from tests.store.contract.helpers import add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio


def _save(agent_id: str, mode: str = "add", now: float = 1.0, **spec: object) -> SaveAgent:
    return SaveAgent(
        spec=AgentSpec(id=agent_id, **spec),  # type: ignore[arg-type]
        source="api",
        mode=mode,  # type: ignore[arg-type]
        now=now,
    )


async def test_an_agent_is_added_once_and_reads_back(store: Store) -> None:
    got = await store.apply_one(
        _save("w-1", name="Worker", capabilities=["py", "sh"], policy="on-demand",
              max_concurrent=2, delivery="@ops", model="m", wake="true", wake_timeout=5.0)
    )  # fmt: skip
    assert got == "added"
    assert await store.apply_one(_save("w-1", name="other")) == "exists"
    a = await store.agent("w-1")
    assert a is not None
    assert (a.name, a.capabilities, a.policy, a.max_concurrent, a.delivery, a.model) == (
        "Worker", ["py", "sh"], "on-demand", 2, "@ops", "m",
    )  # fmt: skip
    assert (a.wake, a.wake_timeout, a.source, a.status, a.failures, a.removed) == (
        "true", 5.0, "api", "ready", 0, False,
    )  # fmt: skip
    assert (a.created_at, a.updated_at, a.running, a.last_seen) == (1.0, 1.0, 0, None)
    assert await store.agent("nobody") is None
    await store.apply_one(_save("a-0", capabilities=[]))
    await store.apply_one(_save("B"))
    assert [x.id for x in await store.agents()] == ["B", "a-0", "w-1"]  # by id, bytewise
    assert (await store.agent("a-0")).capabilities == []  # type: ignore[union-attr]


async def test_register_replaces_the_definition_and_keeps_the_live_state(store: Store) -> None:
    assert await store.apply_one(_save("w", mode="register", capabilities=["a"])) == "added"
    await store.apply_one(
        AgentStates([AgentState(id="w", status="busy", seen=3.0, failures=2)], 3.0)
    )
    again = _save("w", mode="register", now=4.0, capabilities=["b"], max_concurrent=9)
    assert await store.apply_one(again) == "updated"
    a = await store.agent("w")
    assert a is not None
    assert (a.capabilities, a.max_concurrent, a.status, a.last_seen, a.failures) == (
        ["b"], 9, "busy", 3.0, 2,
    )  # fmt: skip
    assert (a.created_at, a.updated_at) == (1.0, 4.0)


async def test_an_update_changes_only_definition_fields_of_a_live_agent(store: Store) -> None:
    await store.apply_one(_save("w", capabilities=["a"]))
    op = UpdateAgent(
        id="w",
        changes={"capabilities": ["x", "y"], "wake_timeout": 7, "status": "offline", "name": "N"},
        now=2.0,
    )
    assert await store.apply_one(op) is True
    a = await store.agent("w")
    assert a is not None
    assert (a.capabilities, a.wake_timeout, a.status, a.name, a.updated_at) == (
        ["x", "y"], 7.0, "ready", "N", 2.0,
    )  # fmt: skip
    assert await store.apply_one(UpdateAgent(id="nobody", changes={"name": "n"}, now=2.0)) is False


async def test_state_changes_are_conditional_and_a_way_back_resets_failures(store: Store) -> None:
    await store.apply_one(_save("w"))
    items = [
        AgentState(id="w", status="degraded", failures=3),
        AgentState(id="w", status="offline", when=("ready",)),  # it is degraded: no change
        AgentState(id="nobody", status="offline"),
    ]
    assert await store.apply_one(AgentStates(items, 2.0)) == ["degraded", "degraded", None]
    back = AgentStates([AgentState(id="w", status="ready", when=("degraded", "offline"))], 3.0)
    assert await store.apply_one(back) == ["ready"]
    a = await store.agent("w")
    assert a is not None and (a.status, a.failures, a.updated_at) == ("ready", 0, 3.0)
    before = a.rev
    # a status it already has writes nothing (no new rev); a heartbeat does
    assert await store.apply_one(AgentStates([AgentState(id="w", status="ready")], 4.0)) == [
        "ready"
    ]
    a = await store.agent("w")
    assert a is not None and (a.rev, a.updated_at) == (before, 3.0)
    await store.apply_one(AgentStates([AgentState(id="w", seen=5.0)], 5.0))
    a = await store.agent("w")
    assert a is not None and a.last_seen == 5.0 and a.rev > before


async def test_a_removed_agent_is_a_tombstone_and_can_be_added_again(store: Store) -> None:
    await store.apply_one(_save("w", capabilities=["a"]))
    await store.apply_one(AgentStates([AgentState(id="w", status="busy", failures=4)], 2.0))
    assert await store.apply_one(RemoveAgent("w", 3.0)) is True
    assert await store.apply_one(RemoveAgent("w", 3.0)) is False
    assert await store.agent("w") is None and await store.agents() == []
    assert await store.apply_one(UpdateAgent(id="w", changes={"name": "n"}, now=4.0)) is False
    assert await store.apply_one(AgentStates([AgentState(id="w", seen=4.0)], 4.0)) == [None]
    [gone] = await store.agents(since_rev=0)
    assert gone.removed and gone.id == "w"
    assert await store.apply_one(_save("w", now=5.0, capabilities=["b"])) == "added"
    a = await store.agent("w")
    assert a is not None
    assert (a.capabilities, a.status, a.failures, a.created_at, a.removed) == (
        ["b"], "ready", 0, 5.0, False,
    )  # fmt: skip


async def test_every_write_takes_a_higher_rev_and_since_rev_lists_the_changes(
    store: Store,
) -> None:
    await store.apply_one(_save("a"))
    await store.apply_one(_save("b"))
    [ra, rb] = [x.rev for x in await store.agents()]
    assert 0 < ra < rb
    await store.apply_one(UpdateAgent(id="a", changes={"model": "m"}, now=2.0))
    changed = await store.agents(since_rev=rb)
    assert [(x.id, x.model) for x in changed] == [("a", "m")] and changed[0].rev > rb
    await store.apply_one(RemoveAgent("b", 3.0))
    since = await store.agents(since_rev=rb)
    assert [(x.id, x.removed) for x in since] == [("a", False), ("b", True)]  # by rev
    assert await store.agents(since_rev=since[-1].rev) == []
    assert [x.id for x in await store.agents(since_rev=0)] == ["a", "b"]


async def test_notes_assign_claimed_dispatches_and_record_why_others_wait(store: Store) -> None:
    await store.apply_one(_save("w"))
    j = await add_job(store, "a")
    [(d1, _), (d2, _), (d3, _)] = await enqueue(store, new(j), new(j), new(j))
    run = await claim(store, d1)
    assert run is not None
    notes = AgentNotes(
        assigned=[(d1, "w")],
        waiting=[(d2, "no agent with cap x"), (d1, "late")],
        states=[AgentState(id="w", status="busy")],
        now=4.0,
    )
    assert await store.apply_one(notes) is None
    one, two, three = [await store.dispatch(d) for d in (d1, d2, d3)]
    assert one is not None and (one.agent, one.wait_reason) == ("w", None)  # running: no reason
    assert two is not None and (two.agent, two.wait_reason) == (None, "no agent with cap x")
    assert three is not None and three.wait_reason is None
    r = await store.run(run)
    assert r is not None and r.agent == "w"
    a = await store.agent("w")
    assert a is not None and (a.status, a.running) == ("busy", 1)
    [listed] = await store.agents()
    assert listed.running == 1
    assert one.assigned_at == 4.0  # when the assignment was recorded


async def test_notes_record_the_worker_that_claimed_a_run(store: Store) -> None:
    await store.apply_one(_save("w"))
    j = await add_job(store, "a")
    [(d1, _), (d2, _)] = await enqueue(store, new(j), new(j))
    r1, r2 = await claim(store, d1), await claim(store, d2)
    assert r1 is not None and r2 is not None
    await finish(store, r2, d2)  # its worker's claim is committed after the run ended
    notes = AgentNotes([], [], [], 5.0, claimed=[(r1, d1, "w", 4.5), (r2, d2, "x", 4.25)])
    assert await store.apply_one(notes) is None
    one, two = await store.dispatch(d1), await store.dispatch(d2)
    assert one is not None and (one.agent, one.assigned_at) == ("w", 4.5)
    assert two is not None and (two.agent, two.assigned_at) == ("x", 4.25)
    assert [(r.id, r.agent) for r in await store.runs(agent="w")] == [(r1, "w")]
    assert [(r.id, r.status) for r in await store.runs(agent="x")] == [(r2, "ok")]
    a = await store.agent("w")
    assert a is not None and a.running == 1  # the registry counts the claimed run
    # a claim noted for a run that is no longer its dispatch's current one leaves the
    # dispatch to the newer run
    late = AgentNotes([], [], [], 6.0, claimed=[(r1 + 999, d1, "z", 6.0)])
    assert await store.apply_one(late) is None
    one = await store.dispatch(d1)
    assert one is not None and one.agent == "w"
    # retried, the dispatch is nobody's until its next run is claimed or assigned
    assert await finish(store, r1, d1, outcome="error", next="retry")  # its new seq
    one = await store.dispatch(d1)
    assert one is not None and (one.status, one.agent, one.assigned_at) == ("queued", None, None)


async def test_two_stores_writing_agents_at_once_never_skip_a_rev(
    store: Store, database: str
) -> None:
    names = [f"a{i}" for i in range(8)]
    for name in names:
        await store.apply_one(_save(name))
    other = await open_store(database)
    seen: dict[str, int] = {}
    mark = 0

    async def beat(s: Store, rounds: int, tag: float) -> None:
        for k in range(rounds):
            items = [AgentState(id=n, seen=tag + k) for n in names]
            await s.apply_one(AgentStates(items, tag + k))

    async def follow() -> None:  # a reader of changes, as the dispatcher reads them
        nonlocal mark
        for _ in range(40):
            for a in await store.agents(since_rev=mark):
                seen[a.id] = a.rev
                mark = max(mark, a.rev)
            await anyio.lowlevel.checkpoint()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(beat, store, 10, 100.0)
            tg.start_soon(beat, other, 10, 200.0)
            tg.start_soon(follow)
    finally:
        await other.close(checkpoint=False)
    final = await store.agents()
    revs = [a.rev for a in final]
    assert len(set(revs)) == len(revs)
    for a in await store.agents(since_rev=mark):
        seen[a.id] = a.rev
    assert seen == {a.id: a.rev for a in final}  # the follower missed no last write
