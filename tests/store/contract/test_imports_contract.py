"""Store contract: ``ImportBatch`` (an import from another scheduler) — jobs named
around clashes and kept on re-import, a stored fire time that is ahead kept, skipped
slots and history runs recorded once, messages with their replies, agents, queued
dispatches held by an approval gate, a dry run that writes nothing — through the
protocol and the op Structs only."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from shepherd.store.models import AgentSpec, ApprovalPolicy, JobSpec, encode_json
from shepherd.store.ops import NewMessage, SkippedSlot
from shepherd.store.ops.imports import (
    ImportAgent,
    ImportBatch,
    ImportDispatch,
    ImportJob,
    ImportMessage,
    ImportRun,
)
from shepherd.store.protocol import Store
from tests.store.contract.helpers import add_job

pytestmark = pytest.mark.anyio


def _job(source_id: str, name: str, *, digest: str = "d1", **spec: Any) -> ImportJob:
    fields = {k: spec.pop(k) for k in ("next_run_at", "skipped", "parent_source") if k in spec}
    body = JobSpec(name=name, executor="shell", target="true", **spec)
    return ImportJob(
        source_id=source_id,
        digest=digest,
        name=name,
        executor="shell",
        enabled=True,
        spec=encode_json(body),
        next_run_at=fields.get("next_run_at"),
        skipped=fields.get("skipped", []),
        parent_source=fields.get("parent_source"),
    )


def _queued(source_id: str, job_source: str, **kw: Any) -> ImportDispatch:
    values: dict[str, Any] = {"kind": "enqueue", "priority": 2, "not_before": 0.0}
    values.update(kw)
    return ImportDispatch(
        source_id=source_id, digest="", job_source=job_source, max_attempts=3, **values
    )


def _batch(**kw: Any) -> ImportBatch:
    return ImportBatch(source="ocs", now=10.0, origin="import", **kw)


def _seen(done: Any) -> list[tuple[str, str, str]]:
    return [(i.kind, i.source_id, i.status) for i in done.items]


async def test_jobs_are_named_around_clashes_and_unchanged_when_imported_again(
    store: Store,
) -> None:
    await add_job(store, "backup")  # a job this source did not create
    op = _batch(jobs=[_job("s1-abcdefgh", "backup"), _job("s2", "report")])
    done = await store.apply_one(op)
    assert [(i.status, i.target) for i in done.items] == [
        ("created", "backup-s1-abcde"),
        ("created", "report"),
    ]
    names = sorted(j.spec.name for j in await store.jobs())
    assert names == ["backup", "backup-s1-abcde", "report"]
    again = await store.apply_one(op)
    assert [(i.status, i.target) for i in again.items] == [
        ("unchanged", "backup-s1-abcde"),
        ("unchanged", "report"),
    ]
    changed = _job("s2", "report", digest="d2", description="new")
    updated = await store.apply_one(_batch(jobs=[changed]))
    assert _seen(updated) == [("job", "s2", "updated")]
    row = await store.job("report")
    assert row is not None and row.spec.description == "new"
    assert len(await store.jobs()) == 3


async def test_a_stored_fire_time_ahead_of_the_source_is_kept(store: Store) -> None:
    cron = {"cron": "0 * * * *"}
    first = await store.apply_one(_batch(jobs=[_job("h", "hourly", next_run_at=3600.0, **cron)]))
    assert first.items[0].next_run_at == 3600.0
    behind = _job("h", "hourly", digest="d2", next_run_at=1800.0, **cron)
    again = await store.apply_one(_batch(jobs=[behind]))
    assert again.items[0].status == "updated" and again.items[0].next_run_at == 3600.0
    moved = _job("h", "hourly", digest="d3", next_run_at=1800.0, cron="30 * * * *")
    got = await store.apply_one(_batch(jobs=[moved]))
    assert got.items[0].next_run_at == 1800.0  # a new schedule: the source's time


async def test_skipped_slots_and_history_runs_are_recorded_once(store: Store) -> None:
    missed = SkippedSlot(slot=600.0, reason="missed", error="down")
    job = _job("j", "nightly", skipped=[missed])
    run = ImportRun(source_id="r1", job_source="j", status="ok", started_at=5.0, finished_at=6.0)
    op = _batch(jobs=[job], runs=[run])
    done = await store.apply_one(op)
    assert _seen(done) == [("job", "j", "created"), ("run", "r1", "created")]
    runs = await store.runs(job="nightly")
    assert sorted((r.status, r.reason) for r in runs) == [("ok", "imported"), ("skipped", "missed")]
    imported = next(r for r in runs if r.status == "ok")
    assert done.items[1].target == str(imported.id)
    assert (imported.started_at, imported.finished_at, imported.dispatch_id) == (5.0, 6.0, None)
    again = await store.apply_one(op)
    assert _seen(again) == [("job", "j", "unchanged"), ("run", "r1", "unchanged")]
    assert len(await store.runs(job="nightly")) == 2


async def test_messages_keep_their_replies_and_agents_are_registered(store: Store) -> None:
    ask = ImportMessage(
        source_id="m1",
        digest="",
        message=NewMessage(from_agent="ops", to_agent="bot", body="disk at 91%"),
        created_at=3.0,
    )
    answer = ImportMessage(
        source_id="m2",
        digest="",
        message=NewMessage(from_agent="bot", to_agent="ops", body="on it"),
        reply_source="m1",
        created_at=4.0,
    )
    agent = ImportAgent(source_id="a1", digest="x", spec=AgentSpec(id="bot", name="Bot"))
    op = _batch(messages=[ask, answer], agents=[agent])
    done = await store.apply_one(op)
    assert _seen(done) == [
        ("agent", "a1", "created"),
        ("message", "m1", "created"),
        ("message", "m2", "created"),
    ]
    first, reply = int(done.items[1].target), int(done.items[2].target)
    got = await store.message(reply)
    assert got is not None and got.reply_to == first and got.body == "on it"
    registered = await store.agent("bot")
    assert registered is not None and registered.name == "Bot"
    again = await store.apply_one(op)
    assert [i.status for i in again.items] == ["unchanged"] * 3
    assert [i.target for i in again.items[1:]] == [str(first), str(reply)]
    assert len(await store.messages()) == 2


async def test_queued_dispatches_are_gated_unless_approved_already(store: Store) -> None:
    gated = _job("g", "deploy", approval=ApprovalPolicy())
    plain = _job("p", "report")
    rows = [
        _queued("q1", "g"),
        _queued("q2", "g", gate=False),
        _queued("q3", "p", priority=1, not_before=99.0),
    ]
    done = await store.apply_one(_batch(jobs=[gated, plain], dispatches=rows))
    assert done.gated == 1
    ids = [int(i.target) for i in done.items if i.kind == "dispatch"]
    assert ids == sorted(ids) and len(set(ids)) == 3
    got = [await store.dispatch(i) for i in ids]
    assert [(d.job_name, d.status) for d in got if d is not None] == [
        ("deploy", "awaiting_approval"),
        ("deploy", "queued"),
        ("report", "queued"),
    ]
    assert got[2] is not None and (got[2].priority, got[2].not_before) == ("high", 99.0)
    [a] = await store.approvals()
    assert a.dispatch_id == ids[0]
    again = await store.apply_one(_batch(jobs=[gated, plain], dispatches=rows))
    assert again.gated == 0 and [i.status for i in again.items[2:]] == ["unchanged"] * 3
    assert len(await store.dispatches(status=["queued", "awaiting_approval"])) == 3


async def test_a_dry_run_decides_everything_and_writes_nothing(store: Store) -> None:
    op = _batch(jobs=[_job("j", "nightly")], dispatches=[_queued("q", "j")], dry_run=True)
    done = await store.apply_one(op)
    assert _seen(done) == [("job", "j", "created"), ("dispatch", "q", "created")]
    assert await store.jobs() == [] and await store.dispatches() == []
    real = await store.apply_one(msgspec.structs.replace(op, dry_run=False))
    assert [i.status for i in real.items] == ["created", "created"]
