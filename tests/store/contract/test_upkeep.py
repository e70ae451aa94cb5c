"""Store contract: run keys, crash recovery, heartbeats, retention, messages and
deliveries, the status row, backup and checkpoint — through the protocol only."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from shepherd.store.errors import StoreError
from shepherd.store.factory import is_postgres, open_store
from shepherd.store.ops import (
    Attempt,
    Heartbeats,
    InsertDeliveries,
    InsertMessages,
    MarkMessages,
    NewDelivery,
    NewMessage,
    Pruned,
    PruneDispatches,
    PruneKeys,
    PruneRunsPerJob,
    RecordAttempts,
    RecordProcess,
    RecoverOrphans,
    SaveStatus,
)
from shepherd.store.protocol import Store
from tests.pg_restore import restored_elsewhere
from tests.store.contract.helpers import add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio


async def test_a_run_key_is_held_while_claimed_and_after_ok_until_it_expires(store: Store) -> None:
    a = await add_job(store, "a")
    [(d1, _), (d2, _), (d3, _), (d4, _)] = await enqueue(store, *[new(a) for _ in range(4)])
    r1 = await claim(store, d1, key="K", job_id=a, ttl=10.0)
    assert r1
    assert await claim(store, d2, key="K", job_id=a) == 0  # held by r1: skipped
    skipped = await store.dispatch(d2)
    assert skipped is not None and (skipped.status, skipped.outcome) == ("done", "skipped")
    assert await finish(store, r1, d1) == 0  # ok: the key stays claimed ...
    assert await claim(store, d3, key="K", job_id=a, now=5.0) == 0
    assert await claim(store, d4, key="K", job_id=a, now=20.0)  # ... until it expires


async def test_a_failed_run_releases_its_key_for_the_next_attempt(store: Store) -> None:
    a = await add_job(store, "a")
    [(d, _)] = await enqueue(store, new(a))
    r1 = await claim(store, d, key="L", job_id=a)
    assert r1 and await finish(store, r1, d, outcome="error", next="retry") is not None
    assert await claim(store, d, attempt=2, key="L", job_id=a, now=5.0)


async def test_expired_keys_are_pruned_in_bounded_batches(store: Store) -> None:
    a = await add_job(store, "a")
    rows = await enqueue(store, *[new(a) for _ in range(3)])
    for i, (d, _) in enumerate(rows):
        run_id = await claim(store, d, key=f"k{i}", job_id=a, ttl=1.0)
        assert run_id and await finish(store, run_id, d) == 0
    assert await store.apply_one(PruneKeys(now=100.0, limit=2)) == Pruned(2, 0)
    assert await store.apply_one(PruneKeys(now=100.0, limit=2)) == Pruned(1, None)


async def test_recovery_replays_at_least_once_and_buries_at_most_once(store: Store) -> None:
    once = await add_job(store, "once")
    least = await add_job(store, "least", delivery_guarantee="at-least-once")
    [(d1, _), (d2, s2)] = await enqueue(store, new(once, "once"), new(least, "least"))
    r1, r2 = await claim(store, d1), await claim(store, d2)
    assert r1 and r2
    assert await store.apply_one(RecordProcess(r2, 4242, 17, "boot")) is True
    assert await store.orphaned_processes() == [(r2, 4242, 17, "boot")]
    got = await store.apply_one(RecoverOrphans(now=9.0, origin="next", processes={r2: "gone"}))
    assert sorted(got) == sorted([(r1, d1, "dead"), (r2, d2, "replay")])
    dead, replay = await store.dispatch(d1), await store.dispatch(d2)
    assert dead is not None and (dead.status, dead.dead_reason) == ("dead", "crashed")
    assert replay is not None and replay.status == "queued" and replay.seq > s2
    run = await store.run(r2)
    assert run is not None and (run.status, run.process) == ("crashed", "gone")
    assert await store.orphaned_processes() == []


async def test_heartbeats_stamp_running_runs(store: Store) -> None:
    a = await add_job(store, "a")
    [(d, _)] = await enqueue(store, new(a))
    run_id = await claim(store, d)
    assert run_id and await store.apply_one(Heartbeats([(run_id, 8.5)])) == 1
    run = await store.run(run_id)
    assert run is not None and run.heartbeat_at == 8.5


async def test_prune_keeps_the_newest_runs_and_rows_still_in_use(store: Store) -> None:
    a = await add_job(store, "a")
    rows = await enqueue(store, *[new(a) for _ in range(4)])
    for d, _ in rows:
        run_id = await claim(store, d)
        assert run_id and await finish(store, run_id, d) == 0
    [(live, _)] = await enqueue(store, new(a), now=5.0)  # queued: never pruned
    got = await store.apply_one(PruneRunsPerJob(keep=2, limit=100))
    assert got.deleted == 2
    assert len(await store.runs(job="a")) == 2
    op = PruneDispatches(status="done", before=100.0, keyed_before=100.0, limit=100)
    assert (await store.apply_one(op)).deleted == 4
    assert [d.id for d in await store.dispatches()] == [live]


async def test_messages_and_deliveries_round_trip(store: Store) -> None:
    note = NewMessage(from_agent="x", to_agent="y", body="hi", kind="text")
    rule = NewMessage(from_agent="x", to_agent="broadcast", body="no", kind="constraint")
    [m1, m2] = await store.apply_one(InsertMessages([note, rule], 1.0))
    assert [m.id for m in await store.inbox("y")] == [m2, m1]  # constraints first
    assert await store.apply_one(MarkMessages([m1], "delivered", 2.0)) == 1
    assert [m.id for m in await store.inbox("y")] == [m2]
    assert [m.id for m in await store.messages(from_agent="x")] == [m2, m1]
    row = NewDelivery(
        kind="announce", body="done", channel=None, target=None, max_attempts=2,
        next_attempt_at=1.0,
    )  # fmt: skip
    [d] = await store.apply_one(InsertDeliveries([row], 1.0))
    assert [x.id for x in await store.pending_deliveries()] == [d]
    assert await store.apply_one(RecordAttempts([Attempt(id=d, ok=True, sink="log")], 2.0)) == [
        True
    ]
    sent = await store.delivery(d)
    assert sent is not None and (sent.status, sent.sink) == ("sent", "log")
    assert [x.id for x in await store.deliveries(status="sent")] == [d]


async def test_the_latest_status_row_reads_back(store: Store) -> None:
    assert await store.latest_instance() is None
    await store.apply_one(SaveStatus("i1", 7, 1.0, 2.0, b'{"ok": true}'))
    got = await store.latest_instance()
    assert got is not None and (got["instance"], got["pid"], got["health"]) == (
        "i1",
        7,
        {"ok": True},
    )


async def test_backup_copies_the_database_and_checkpoint_keeps_it(
    store: Store, database: str, tmp_path: Path
) -> None:
    await add_job(store, "a")
    await store.checkpoint()
    target = str(tmp_path / "copy.db")
    size = await store.backup(target)
    assert size == (await anyio.Path(target).stat()).st_size > 0
    assert not [p async for p in anyio.Path(tmp_path).glob(".copy.db.partial-*")]  # renamed
    if is_postgres(database):  # a pg_dump file: restored with pg_restore elsewhere
        async with restored_elsewhere(database, target) as copy_url:
            copy = await open_store(copy_url)
            try:
                assert [j.spec.name for j in await copy.jobs()] == ["a"]
            finally:
                await copy.close(checkpoint=False)
    else:
        copy = await open_store(target)
        try:
            assert [j.spec.name for j in await copy.jobs()] == ["a"]
        finally:
            await copy.close(checkpoint=False)
    assert store.statistics()["commits"] >= 1


async def test_a_backup_to_a_missing_directory_is_a_store_error(
    store: Store, tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match="missing"):
        await store.backup(str(tmp_path / "missing" / "copy.db"))
