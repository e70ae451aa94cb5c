"""Store contract: spawn messages (store/ops/spawn.py) — a message, its one-shot job
and ``spawn`` dispatch in one op; a refused spec or a taken name fails the message;
a stored pending message is adopted once, also by two stores on one database at once.
Through the protocol and the op Structs only."""

from __future__ import annotations

import anyio
import pytest

from shepherd.store.factory import open_store
from shepherd.store.models import ApprovalPolicy, JobSpec, encode_json
from shepherd.store.ops import InsertMessages, MarkMessages, NewMessage, Spawned, SpawnMessage
from shepherd.store.protocol import Store
from tests.store.contract.helpers import add_job

pytestmark = pytest.mark.anyio


def _message(body: str = "{}", **fields: object) -> NewMessage:
    return NewMessage(from_agent="boss", to_agent="w", body=body, kind="spawn", **fields)  # type: ignore[arg-type]


def _op(now: float = 10.0, *, name: str = "job-{id}", **fields: object) -> SpawnMessage:
    spec = JobSpec(name=name, target="echo hi", delete_after_run=True)
    values: dict[str, object] = {
        "spec": encode_json(spec),
        "executor": spec.executor,
        "priority": 1,
        "max_attempts": 2,
        "expires_at": now + 60.0,
    }
    values.update(fields)
    return SpawnMessage(now=now, origin="contract", **values)  # type: ignore[arg-type]


async def test_a_spawn_message_becomes_a_one_shot_job_and_its_dispatch(store: Store) -> None:
    meta = encode_json({"trace": "t1"})
    got: Spawned = await store.apply_one(_op(message=_message(metadata=meta)))
    assert got.status == "delivered" and got.error is None and not got.gated
    assert got.job_name == f"job-{got.message_id}"
    assert got.dispatch_id is not None and got.seq is not None and got.seq > 0
    job = await store.job(got.job_name)
    assert job is not None and job.id == got.job_id
    assert (job.next_run_at, job.spec.name, job.spec.enabled) == (None, got.job_name, True)
    d = await store.dispatch(got.dispatch_id)
    assert d is not None
    assert (d.kind, d.status, d.priority, d.not_before, d.max_attempts, d.expires_at) == (
        "spawn", "queued", "high", 10.0, 2, 70.0,
    )  # fmt: skip
    assert (d.job_id, d.job_name, d.slot, d.seq) == (got.job_id, got.job_name, 10.0, got.seq)
    m = await store.message(got.message_id)
    assert m is not None and (m.status, m.delivered_at, m.kind) == ("delivered", 10.0, "spawn")
    assert m.metadata == {
        "trace": "t1",
        "spawned": {"job": got.job_name, "job_id": got.job_id, "dispatch_id": got.dispatch_id},
    }
    assert await store.pending_spawns() == []
    assert await store.failed_spawns() == (0, [])


async def test_a_refused_spec_or_a_taken_name_fails_the_message(store: Store) -> None:
    await add_job(store, "taken")
    bad = await store.apply_one(_op(message=_message("nope"), error="body: not JSON"))
    assert bad == Spawned(message_id=bad.message_id, status="failed", error="body: not JSON")
    taken = await store.apply_one(_op(11.0, name="taken", message=_message()))
    assert taken.status == "failed" and taken.error == "name: a job named 'taken' exists"
    assert taken.job_id is None and taken.dispatch_id is None
    m = await store.message(taken.message_id)
    assert m is not None and (m.status, m.last_error) == ("failed", taken.error)
    assert [j.spec.name for j in await store.jobs()] == ["taken"]
    assert await store.dispatches() == []
    count, latest = await store.failed_spawns(limit=1)
    assert count == 2
    assert latest == [
        {"id": taken.message_id, "from": "boss", "created_at": 11.0, "error": taken.error}
    ]


async def test_a_stored_pending_spawn_is_adopted_once(store: Store) -> None:
    [first, second] = await store.apply_one(InsertMessages([_message("a"), _message("b")], 1.0))
    [text] = await store.apply_one(
        InsertMessages([NewMessage(from_agent="x", to_agent="y", body="hi")], 1.0)
    )
    assert await store.pending_spawns() == [(first, "boss", "a"), (second, "boss", "b")]
    got = await store.apply_one(_op(message_id=first))
    assert got.status == "delivered" and got.job_name == f"job-{first}"
    assert await store.apply_one(_op(message_id=first)) == Spawned(message_id=first, status=None)
    assert await store.apply_one(_op(message_id=text)) == Spawned(message_id=text, status=None)
    await store.apply_one(MarkMessages([second], "read", 2.0))
    assert await store.apply_one(_op(message_id=second)) == Spawned(message_id=second, status=None)
    assert await store.pending_spawns() == []
    assert len(await store.jobs()) == 1


async def test_a_gated_spawn_is_held_for_its_approval(store: Store) -> None:
    spec = JobSpec(
        name="gated", target="echo", approval=ApprovalPolicy(sources=["spawn"]),
        options={"delivery_to": "ops", "delivery_channel": "log"},
    )  # fmt: skip
    got = await store.apply_one(
        _op(message=_message(), spec=encode_json(spec), name="gated", executor=spec.executor)
    )
    assert got.status == "delivered" and got.gated and got.dispatch_id is not None
    d = await store.dispatch(got.dispatch_id)
    assert d is not None and d.status == "awaiting_approval"
    [a] = await store.approvals(status="pending")
    assert (a.dispatch_id, a.kind) == (got.dispatch_id, "spawn")


async def test_two_stores_adopting_the_same_spawns_deliver_each_once(
    store: Store, database: str
) -> None:
    ids = await store.apply_one(InsertMessages([_message(str(i)) for i in range(6)], 1.0))
    other = await open_store(database)
    results: list[Spawned] = []
    try:

        async def adopt(s: Store) -> None:
            for msg_id in ids:
                results.append(await s.apply_one(_op(message_id=msg_id)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(adopt, store)
            tg.start_soon(adopt, other)
    finally:
        await other.close(checkpoint=False)
    delivered = sorted(r.message_id for r in results if r.status == "delivered")
    assert delivered == sorted(ids)
    assert all(r.status is None for r in results if r.status != "delivered")
    assert len(await store.jobs()) == 6 and len(await store.dispatches()) == 6
