"""PostgreSQL: writes of the messages / agents / spawn area while another node's
transaction is still open (a second connection holds its writes uncommitted), so the
interleaving is fixed, not left to chance.

- Agent revs commit in rev order: a reader that has seen a rev has seen every lower
  one (the dispatcher reads ``agents(since_rev=...)`` as a high-water mark).
- A stored pending spawn message one node is adopting is not adopted again by another.
- Two spawns of one job name: the second fails the name, it does not replace the job.
"""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from shepherd.store.models import AgentSpec, JobSpec, encode_json
from shepherd.store.ops import (
    AgentState,
    AgentStates,
    InsertMessages,
    NewMessage,
    SaveAgent,
    SpawnMessage,
    UpdateAgent,
)
from shepherd.store.postgres import agents, spawn
from shepherd.store.postgres import ops_table as _ops_table
from shepherd.store.postgres.engine import PgStore
from tests.helpers import eventually
from tests.store.conftest import waits_on_a_lock

pytestmark = pytest.mark.anyio
assert _ops_table.READY


async def test_a_reader_of_agent_changes_misses_no_rev_of_a_transaction_still_open(
    store: PgStore, node: asyncpg.Connection
) -> None:
    for name in ("a", "b"):
        spec = AgentSpec(id=name)
        await store.apply_one(SaveAgent(spec=spec, source="api", mode="add", now=1.0))
    mark = max(a.rev for a in await store.agents())
    tr = node.transaction()
    await tr.start()
    await agents.apply_agent_op(node, UpdateAgent(id="a", changes={"model": "m"}, now=2.0))
    done = anyio.Event()

    async def write_b() -> None:
        await store.apply_one(AgentStates([AgentState(id="b", seen=3.0)], 3.0))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_b)
        await eventually(
            lambda: done.is_set() or waits_on_a_lock(store), what="b written or waiting"
        )
        seen = {a.id: a.rev for a in await store.agents(since_rev=mark)}  # as the dispatcher
        mark = max([mark, *seen.values()])
        await tr.commit()
    for a in await store.agents(since_rev=mark):
        seen[a.id] = a.rev
    final = {a.id: a.rev for a in await store.agents()}
    assert seen == final  # a's change was not skipped behind b's higher rev
    assert final["b"] > final["a"]  # revs follow the commit order


def _spawn_op(**fields: object) -> SpawnMessage:
    spec = JobSpec(name=str(fields.pop("name", "job-{id}")), target="echo hi")
    return SpawnMessage(
        now=5.0,
        origin="n",
        spec=encode_json(spec),
        executor=spec.executor,
        **fields,  # type: ignore[arg-type]
    )


async def test_a_pending_spawn_one_node_is_adopting_is_not_adopted_again(
    store: PgStore, node: asyncpg.Connection
) -> None:
    message = NewMessage(from_agent="x", to_agent="y", body="{}", kind="spawn")
    [msg_id] = await store.apply_one(InsertMessages([message], 1.0))
    tr = node.transaction()
    await tr.start()
    first = await spawn.spawn_message(node, _spawn_op(message_id=msg_id))
    assert first.status == "delivered"
    async with anyio.create_task_group() as tg:
        results: list[object] = []

        async def adopt() -> None:
            results.append(await store.apply_one(_spawn_op(message_id=msg_id)))

        tg.start_soon(adopt)
        await eventually(lambda: results or waits_on_a_lock(store), what="the second adoption")
        await tr.commit()
    [second] = results
    assert getattr(second, "status", "?") is None  # no longer pending: left alone
    m = await store.message(msg_id)
    assert m is not None and m.status == "delivered"
    assert [j.spec.name for j in await store.jobs()] == [f"job-{msg_id}"]


async def test_a_spawn_racing_another_for_a_job_name_fails_it(
    store: PgStore, node: asyncpg.Connection
) -> None:
    tr = node.transaction()
    await tr.start()
    row = NewMessage(from_agent="x", to_agent="y", body="{}", kind="spawn")
    first = await spawn.spawn_message(node, _spawn_op(name="same", message=row))
    assert first.status == "delivered"
    async with anyio.create_task_group() as tg:
        results: list[object] = []

        async def send() -> None:
            results.append(await store.apply_one(_spawn_op(name="same", message=row)))

        tg.start_soon(send)
        await eventually(lambda: results or waits_on_a_lock(store), what="the second spawn")
        await tr.commit()
    [second] = results
    assert getattr(second, "status", "?") == "failed"
    assert getattr(second, "error", "") == "name: a job named 'same' exists"
    job = await store.job("same")
    assert job is not None and job.id == first.job_id
    assert len(await store.dispatches()) == 1
