"""Store contract: the scheduler's slot commit (``RecordSlots``) fails one item's bad
values alone (that job's writes roll back, every other job's commit), and ends a job
after its last slot (``finish``)."""

from __future__ import annotations

import pytest

from shepherd.store.ops import RecordSlots, SlotFailed, SlotItem
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
