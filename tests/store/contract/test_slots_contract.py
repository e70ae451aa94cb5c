"""Store contract: the scheduler's slot commit (``RecordSlots``) fails one item's bad
values alone (that job's writes roll back, every other job's commit), and ends a job
after its last slot (``finish``)."""

from __future__ import annotations

import msgspec
import pytest

from shepherd.store.models import JobSpec, encode_json
from shepherd.store.ops import (
    ClaimRun,
    ClaimRuns,
    InsertDispatches,
    RecordSlots,
    SaveJob,
    SlotFailed,
    SlotItem,
)
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, new

pytestmark = pytest.mark.anyio

OFF = b'{"name": "once", "target": "ok", "enabled": false}'  # a one-shot's last spec
HUGE = 2**70  # past any 64-bit column: an item's value the engine cannot store


def _item(job_id: int, name: str, *, attempts: int = 3, **fields: object) -> SlotItem:
    d = new(job_id, name, kind="schedule", slot=60.0, not_before=60.0, max_attempts=attempts)
    return SlotItem(
        job_id=job_id,
        job_name=name,
        expect_next=60.0,
        next_run_at=120.0,
        dispatches=[d],
        **fields,  # type: ignore[arg-type]
    )


async def test_a_bad_item_fails_alone_and_the_others_commit(store: Store) -> None:
    bad = await add_job(store, "bad", next_run_at=60.0)
    good = await add_job(store, "good", next_run_at=60.0)
    items = [
        _item(bad, "bad", attempts=HUGE),
        _item(good, "good", last_run_at=61.0, last_status="ok"),
    ]
    failed, ok = await store.apply_one(RecordSlots(items, ORIGIN, 61.0))
    assert isinstance(failed, SlotFailed) and failed.error
    assert isinstance(ok, list) and len(ok) == 1 and isinstance(ok[0], tuple)
    rows = {r.spec.name: r for r in await store.jobs()}
    assert (rows["good"].next_run_at, rows["good"].last_status) == (120.0, "ok")
    assert rows["bad"].next_run_at == 60.0  # rolled back: nothing of it was written
    assert [d.job_id for d in await store.dispatches(limit=10)] == [good]


async def test_a_finished_one_shot_is_disabled_or_deleted_with_its_last_slot(
    store: Store,
) -> None:
    once = await add_job(store, "once", next_run_at=60.0)
    gone = await add_job(store, "gone", next_run_at=60.0)
    items = [
        _item(
            once,
            "once",
            finish="disable",
            spec=b'{"name": "once", "target": "ok", "enabled": false}',
        ),
        _item(gone, "gone", finish="delete"),
    ]
    disabled, deleted = await store.apply_one(RecordSlots(items, ORIGIN, 61.0))
    assert isinstance(disabled, list) and isinstance(deleted, list)
    row = await store.job("once")
    assert row is not None and (row.spec.enabled, row.next_run_at) == (False, None)
    assert (await store.stats())["jobs_enabled"] == 0
    assert await store.job("gone") is None
    [d] = await store.dispatches(job="gone")
    assert (d.kind, d.slot) == ("schedule", 60.0)  # its last slot is committed


async def test_a_changed_job_withdraws_its_slots_committed_ahead(store: Store) -> None:
    """``SaveJob`` of a job whose schedule changed withdraws its ``schedule`` dispatches
    still queued for a slot after ``now`` (committed ahead); a kept schedule keeps them,
    and a slot already due, another kind or a started one is never touched."""
    job = await add_job(store, "j", next_run_at=60.0)
    ahead = SlotItem(
        job_id=job,
        job_name="j",
        expect_next=60.0,
        next_run_at=180.0,
        dispatches=[
            new(job, "j", kind="schedule", slot=s, not_before=s) for s in (50.0, 120.0, 150.0)
        ],
    )
    [got] = await store.apply_one(RecordSlots([ahead], ORIGIN, 40.0))
    due, later, last = (d for d, _ in got)
    [(plain, _)] = await store.apply_one(
        InsertDispatches([new(job, "j", not_before=130.0)], ORIGIN, 40.0)
    )
    [run_id] = await store.apply_one(
        ClaimRuns([ClaimRun(dispatch_id=last, attempt=1, job_id=job)], ORIGIN, 40.0)
    )
    assert run_id
    body = encode_json(JobSpec(name="j", target="ok", cron="*/5 * * * *"))
    kept = SaveJob("j", "python", True, body, 180.0, 100.0, kept=True)
    await store.apply_one(kept)
    assert {d.id for d in await store.dispatches(limit=10)} == {due, later, last, plain}
    await store.apply_one(SaveJob("j", "python", True, body, 300.0, 100.0))
    left = {d.id: (d.status, d.slot) for d in await store.dispatches(limit=10)}
    assert left == {
        due: ("queued", 50.0),
        later: ("cancelled", None),  # withdrawn: its slot free for the new schedule
        last: ("running", 150.0),
        plain: ("queued", None),
    }
    withdrawn = await store.dispatch(later)
    assert withdrawn is not None
    assert withdrawn.last_error == (
        "withdrawn before its slot 1970-01-01T00:02:00.000Z: the job changed"
    )


async def test_a_claim_of_a_dispatch_gone_since_holds_no_key(store: Store) -> None:
    """A claim whose dispatch is no longer queued (withdrawn, cancelled) takes no
    idempotency key: another dispatch with that key is claimed in the same op."""
    job = await add_job(store, "k", next_run_at=60.0)
    item = SlotItem(
        job_id=job,
        job_name="k",
        expect_next=60.0,
        next_run_at=120.0,
        dispatches=[new(job, "k", kind="schedule", slot=100.0, not_before=100.0)],
    )
    [[(gone, _)]] = await store.apply_one(RecordSlots([item], ORIGIN, 90.0))
    body = encode_json(JobSpec(name="k", target="ok", cron="* * * * *"))
    await store.apply_one(SaveJob("k", "python", True, body, 100.0, 95.0))  # withdrawn
    item = msgspec.structs.replace(item, expect_next=100.0)
    [[(again, _)]] = await store.apply_one(RecordSlots([item], ORIGIN, 96.0))  # again
    claims = [
        ClaimRun(dispatch_id=d, attempt=1, idempotency_key="slot-k-100", job_id=job)
        for d in (gone, again)
    ]
    got = await store.apply_one(ClaimRuns(claims, ORIGIN, 100.0))
    assert got[0] is None and got[1]
    d = await store.dispatch(again)
    assert d is not None and d.status == "running"
