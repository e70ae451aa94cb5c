"""Store contract (both engines): the ops of ``store.ops.runs`` and the administration of
dispatches (settle, recovery, dead-letter retry / purge, heartbeats, process groups,
the status snapshot) beyond ``test_dispatches`` and ``test_upkeep``."""

from __future__ import annotations

import pytest

from shepherd.store.ops import (
    DeadLetterAlert,
    Heartbeats,
    PurgeDead,
    RecordProcess,
    RecoverOrphans,
    RetryDead,
    SaveStatus,
    Settle,
    SettleQueued,
)
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio

ALERT = DeadLetterAlert(to="ops", channel="log")


async def test_settle_records_a_run_saying_why_and_alerts_a_dead_letter(store: Store) -> None:
    a = await add_job(store, "a")
    [(skipped, _), (dead, _), (quiet, _)] = await enqueue(store, new(a), new(a), new(a))
    items = [
        Settle(dispatch_id=skipped, status="done", outcome="skipped", reason="expired"),
        Settle(dispatch_id=dead, status="dead", outcome="cancelled", reason="job-removed"),
        Settle(
            dispatch_id=quiet, status="cancelled", outcome="cancelled", reason="expired",
            record_run=False,
        ),
    ]  # fmt: skip
    assert await store.apply_one(SettleQueued(items, 5.0, alert=ALERT)) == [True, True, True]
    [run] = await store.runs(dispatch_id=skipped)
    assert (run.status, run.reason, run.error, run.started_at, run.finished_at) == (
        "skipped", "expired", "expired", 5.0, 5.0,
    )  # fmt: skip
    assert await store.runs(dispatch_id=quiet) == []
    got = await store.dispatch(dead)
    assert got is not None and (got.status, got.dead_reason, got.last_error) == (
        "dead", "job-removed", "job-removed",
    )  # fmt: skip
    [alert] = await store.deliveries()
    assert (alert.kind, alert.dispatch_id, alert.target, alert.channel) == (
        "dead_letter", dead, "ops", "log",
    )  # fmt: skip
    assert await store.apply_one(SettleQueued(items[:1], 6.0)) == [False]  # no longer queued


async def test_a_replay_has_a_fresh_key_of_the_same_lineage_and_one_more_attempt(
    store: Store,
) -> None:
    least = await add_job(store, "least", delivery_guarantee="at-least-once")
    [(d, _)] = await enqueue(store, new(least, "least", idempotency_key="K", max_attempts=1))
    run_id = await claim(store, d, key="K", job_id=least)
    assert run_id
    assert await store.apply_one(RecoverOrphans(now=9.0, origin="next")) == [(run_id, d, "replay")]
    replay = await store.dispatch(d)
    assert replay is not None
    assert (replay.idempotency_key, replay.max_attempts, replay.outcome, replay.not_before) == (
        "K:replay2", 2, "crashed", 9.0,
    )  # fmt: skip
    assert [x.id for x in await store.queued_since(0, exclude_origin=ORIGIN)] == [d]
    again = await claim(store, d, attempt=2, key="K:replay2", job_id=least, now=10.0)
    assert again  # the crashed run's key was released
    run = await store.run(run_id)
    assert run is not None and (run.status, run.reason, run.finished_at) == (
        "crashed", "orphaned", 9.0,
    )  # fmt: skip
    assert await store.apply_one(RecoverOrphans(now=11.0, origin="next")) == [(again, d, "replay")]


async def test_recovery_alerts_the_at_most_once_dead_letters(store: Store) -> None:
    once = await add_job(store, "once")
    [(d, _)] = await enqueue(store, new(once, "once"))
    run_id = await claim(store, d)
    assert run_id
    got = await store.apply_one(RecoverOrphans(now=9.0, origin="next", alert=ALERT))
    assert got == [(run_id, d, "dead")]
    [alert] = await store.deliveries()
    assert (alert.kind, alert.dispatch_id, alert.run_id) == ("dead_letter", d, run_id)
    assert await store.apply_one(RecoverOrphans(now=10.0, origin="next")) == []


async def test_retry_dead_gives_new_seqs_in_the_order_asked(store: Store) -> None:
    a = await add_job(store, "a")
    [(d1, _), (d2, _), (q, _)] = await enqueue(store, new(a), new(a), new(a))
    for d in (d1, d2):
        run_id = await claim(store, d)
        assert run_id and await finish(store, run_id, d, outcome="error", next="dead") == 0
    assert await store.apply_one(RetryDead([d2, q, d1], 5.0, origin="cli")) == [d2, d1]
    first, second = await store.dispatch(d2), await store.dispatch(d1)
    assert first is not None and second is not None
    assert (first.status, first.attempt, first.not_before, first.dead_reason) == (
        "queued", 0, 5.0, None,
    )  # fmt: skip
    assert first.seq < second.seq
    assert [x.id for x in await store.queued_since(0)] == [q, d2, d1]


async def test_purge_dead_by_age_or_all(store: Store) -> None:
    a = await add_job(store, "a")
    ids = [d for d, _ in await enqueue(store, new(a), new(a), new(a))]
    for at, d in enumerate(ids, start=10):
        run_id = await claim(store, d, now=float(at))
        assert run_id
        await finish(store, run_id, d, outcome="error", next="dead", now=float(at))
    assert await store.apply_one(PurgeDead(before=11.5)) == 2
    assert [x.id for x in await store.dispatches(status="dead")] == [ids[2]]
    assert await store.runs(dispatch_id=ids[0]) == []
    assert await store.apply_one(PurgeDead(ids=[])) == 0
    assert await store.apply_one(PurgeDead()) == 1
    assert await store.dispatches() == [] and await store.runs() == []


async def test_heartbeats_and_process_groups_touch_running_runs_only(store: Store) -> None:
    a = await add_job(store, "a")
    [(d1, _), (d2, _)] = await enqueue(store, new(a), new(a))
    r1, r2 = await claim(store, d1), await claim(store, d2)
    assert r1 and r2 and await finish(store, r2, d2) == 0
    assert await store.apply_one(Heartbeats([(r1, 8.0), (r2, 8.0), (r1 + 100, 8.0)])) == 1
    assert await store.apply_one(Heartbeats([])) == 0
    assert await store.apply_one(RecordProcess(r2, 99, 1, "boot")) is False
    assert await store.apply_one(RecordProcess(r1, 99, 1, "boot")) is True
    assert await store.orphaned_processes() == [(r1, 99, 1, "boot")]
    run = await store.run(r1)
    assert run is not None and (run.heartbeat_at, run.pgid) == (8.0, 99)


async def test_the_status_snapshot_is_one_row_per_instance(store: Store) -> None:
    assert await store.latest_instance() is None
    await store.apply_one(SaveStatus("i1", 7, 1.0, 2.0, b'{"n": 1}'))
    await store.apply_one(SaveStatus("i2", 8, 1.5, 3.0, b'{"n": 2}'))
    latest = await store.latest_instance()
    assert latest is not None and (latest["instance"], latest["health"]) == ("i2", {"n": 2})
    await store.apply_one(SaveStatus("i1", 9, 1.0, 4.0, b'{"n": 3}', stopped=True))
    latest = await store.latest_instance()
    assert latest == {
        "instance": "i1", "pid": 7, "started_at": 1.0, "updated_at": 4.0,
        "stopped_at": 4.0, "health": {"n": 3},
    }  # fmt: skip
