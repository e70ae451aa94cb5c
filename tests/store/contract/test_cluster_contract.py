"""The cluster contract: join, renew, expiry, rescue and fencing (``store.cluster``).

Every engine: a node joins and renews. The multi-node cases open two or three stores
as different nodes on one PostgreSQL database (a short lease expires on the server's
clock; no fixed sleeps: the rescuer retries until it finds the expired node)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import anyio
import asyncpg
import pytest

from shepherd.store.cluster import NodeLease, Rescue, share
from shepherd.store.factory import open_store
from shepherd.store.models import JobSpec, encode_json
from shepherd.store.ops import (
    ClaimRun,
    ClaimRuns,
    FinishRun,
    FinishRuns,
    RecordProcess,
    RecoverOrphans,
    SaveJob,
)
from shepherd.store.postgres.engine import PgStore
from shepherd.store.protocol import Store
from tests.helpers import eventually
from tests.store.contract.helpers import enqueue, new

pytestmark = pytest.mark.anyio

SHORT = 0.05  # a lease that has run out by the time the other node looks


@asynccontextmanager
async def node_store(url: str, node: str) -> AsyncIterator[PgStore]:
    s = await open_store(url, node=node)
    assert isinstance(s, PgStore)
    try:
        yield s
    finally:
        await s.close(checkpoint=False)


async def rescued(rescuer: Store, name: str, node: str) -> list[Rescue]:
    """Rescue passes until one rescues ``node``; what that pass did."""
    found: list[Rescue] = []

    async def look() -> bool:
        found[:] = await rescuer.rescue_nodes(rescuer=name, origin=name)
        return any(r.node == node for r in found)

    await eventually(look, what=f"{node} rescued")
    return found


async def job(store: Store, name: str, guarantee: str) -> int:
    spec = JobSpec(name=name, target="ok", delivery_guarantee=guarantee)  # type: ignore[arg-type]
    op = SaveJob(name, spec.executor, spec.enabled, encode_json(spec), None, 1.0)
    job_id: int = await store.apply_one(op)
    return job_id


async def claim_as(
    store: Store, node: str, epoch: int, dispatch_id: int, job_id: int
) -> int | None:
    c = ClaimRun(dispatch_id=dispatch_id, attempt=1, idempotency_key=None, job_id=job_id)
    [run_id] = await store.apply_one(ClaimRuns([c], node, 3.0, epoch=epoch))
    return run_id  # type: ignore[no-any-return]


async def finish_as(store: Store, node: str, epoch: int, run_id: int, dispatch_id: int) -> object:
    f = FinishRun(run_id=run_id, dispatch_id=dispatch_id, outcome="ok", next="done")
    [got] = await store.apply_one(FinishRuns([f], 4.0, node, epoch=epoch))
    return got


def test_shares_add_up_and_favour_the_lowest_ranks() -> None:
    assert [share(10, 3, r) for r in range(3)] == [4, 3, 3]
    assert [share(1, 3, r) for r in range(3)] == [1, 0, 0]
    assert share(7, 1, 0) == 7
    for limit in range(12):
        for count in range(1, 5):
            assert sum(share(limit, count, r) for r in range(count)) == limit


async def test_a_node_joins_and_renews(store: Store) -> None:
    joined = await store.join_node("n1", lease=15.0, host="h", pid=1)
    renewed = await store.renew_node("n1", joined.epoch, lease=15.0)
    assert not renewed.fenced
    assert (renewed.rank, renewed.count) == (0, 1)
    if not isinstance(store, PgStore):
        assert joined == NodeLease(node="n1", epoch=0, lease=15.0)
        assert await store.rescue_nodes(rescuer="n1", origin="n1") == []
        return
    assert joined.epoch > 0 and not joined.single
    [info] = await store.nodes()
    assert (info.name, info.status, info.epoch, info.host, info.pid) == (
        "n1",
        "alive",
        joined.epoch,
        "h",
        1,
    )
    assert 0.0 <= info.lease_age < 15.0
    await store.leave_node("n1", joined.epoch)
    [info] = await store.nodes()
    assert info.status == "left"


async def test_ranks_follow_join_order_and_epochs_grow(pg_url: str) -> None:
    async with node_store(pg_url, "a") as a, node_store(pg_url, "b") as b:
        ja = await a.join_node("a", lease=15.0, host="h", pid=1)
        jb = await b.join_node("b", lease=15.0, host="h", pid=2)
        assert jb.epoch > ja.epoch
        ra = await a.renew_node("a", ja.epoch, lease=15.0)
        rb = await b.renew_node("b", jb.epoch, lease=15.0)
        assert (ra.rank, ra.count, rb.rank, rb.count) == (0, 2, 1, 2)
        again = await a.join_node("a", lease=15.0, host="h", pid=3)  # a new incarnation
        assert again.epoch > jb.epoch
        assert (await a.renew_node("a", ja.epoch, lease=15.0)).fenced  # the old one


async def test_an_expired_node_is_rescued_once_and_fenced(pg_url: str) -> None:
    async with (
        node_store(pg_url, "a") as a,
        node_store(pg_url, "b") as b,
        node_store(pg_url, "c") as c,
    ):
        ja = await a.join_node("a", lease=SHORT, host="h", pid=1)
        await b.join_node("b", lease=15.0, host="h", pid=2)
        await c.join_node("c", lease=15.0, host="h", pid=3)
        await eventually(lambda: _status(b, "a", "expired"), what="a's lease ran out on the server")
        both = await _both_rescue(b, c)
        assert [r.node for r in both] == ["a"]  # two rescuers, one rescue
        assert both[0].epoch > ja.epoch
        assert await _status(b, "a", "dead")
        fenced = await a.renew_node("a", ja.epoch, lease=15.0)
        assert fenced.fenced
        back = await a.join_node("a", lease=15.0, host="h", pid=1)
        assert back.epoch > both[0].epoch and not back.fenced
        assert await _status(b, "a", "alive")


async def _status(store: Store, node: str, status: str) -> bool:
    return any(n.name == node and n.status == status for n in await store.nodes())


async def _both_rescue(b: Store, c: Store) -> list[Rescue]:
    out: list[Rescue] = []

    async def one(s: Store, name: str) -> None:
        out.extend(await s.rescue_nodes(rescuer=name, origin=name))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, b, "b")
        tg.start_soon(one, c, "c")
    return out


async def test_a_rescue_ends_the_dead_nodes_connections(pg_url: str) -> None:
    watch = await asyncpg.connect(pg_url.split("?")[0])  # one connection polls, throughout
    try:
        async with node_store(pg_url, "a") as a, node_store(pg_url, "b") as b:
            ja = await a.join_node("a", lease=SHORT, host="h", pid=1)
            await b.join_node("b", lease=15.0, host="h", pid=2)
            before = await _backends(watch, a.backend)
            assert len(before) >= 3  # writer, lease link, pool
            await rescued(b, "b", "a")
            await eventually(  # (a pool may open a new one meanwhile: a new backend)
                lambda: _gone(watch, before), what="a's backends ended", timeout=30.0
            )
            assert await _backends(watch, b.backend)
            assert (await a.renew_node("a", ja.epoch, lease=15.0)).fenced  # it reconnects
            back = await a.join_node("a", lease=15.0, host="h", pid=1)
            assert await a.stats() is not None  # the pool reconnects too
            assert not (await a.renew_node("a", back.epoch, lease=15.0)).fenced
    finally:
        await watch.close()


# A backend is its pid and its start: with tests running in parallel (pytest -n) a pid
# ended here may soon be another backend's, and other databases' are not ours.
Backend = tuple[int, datetime]


async def _gone(conn: asyncpg.Connection, backends: set[Backend]) -> bool:
    return not (backends & await _backends(conn, None))


async def _backends(conn: asyncpg.Connection, name: str | None) -> set[Backend]:
    """This database's backends (named ``name``), seen through ``conn``: one connection
    for all the polling (a connection per poll, 200 a second, slowed a loaded server
    enough to time the test out, and a connect cut off mid-way by that timeout left
    asyncpg's TLS probe with an exception nobody read)."""
    rows = await conn.fetch(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE datname = current_database()"
        " AND ($1::text IS NULL OR application_name = $1)",
        name,
    )
    return {(int(r[0]), r[1]) for r in rows}


@pytest.mark.parametrize("guarantee", ["at-least-once", "at-most-once"])
async def test_a_rescue_applies_the_guarantee_and_fences_stale_writes(
    pg_url: str, guarantee: str
) -> None:
    async with node_store(pg_url, "a") as a, node_store(pg_url, "b") as b:
        ja = await a.join_node("a", lease=SHORT, host="h", pid=1)
        jb = await b.join_node("b", lease=15.0, host="h", pid=2)
        job_id = await job(a, "j", guarantee)
        [(mine, _), (theirs, _)] = await enqueue(a, new(job_id, "j"), new(job_id, "j"))
        run_a = await claim_as(a, "a", ja.epoch, mine, job_id)
        run_b = await claim_as(b, "b", jb.epoch, theirs, job_id)
        assert run_a and run_b
        [rescue] = await rescued(b, "b", "a")
        action = "replay" if guarantee == "at-least-once" else "dead"
        assert rescue.runs == [(run_a, mine, action)]
        after = await b.dispatch(mine)
        assert after is not None
        assert after.status == ("queued" if guarantee == "at-least-once" else "dead")
        run = await b.run(run_a)
        assert run is not None and run.status == "crashed"
        # the stale node's outcome and claims are refused, whatever they name
        assert await finish_as(a, "a", ja.epoch, run_a, mine) is None
        if guarantee == "at-least-once":
            assert await claim_as(a, "a", ja.epoch, mine, job_id) is None
            assert (await b.dispatch(mine)).status == "queued"  # type: ignore[union-attr]
        # the live node's run is untouched and its outcome accepted
        assert (await b.run(run_b)).status == "running"  # type: ignore[union-attr]
        assert await finish_as(b, "b", jb.epoch, run_b, theirs) == 0


async def test_startup_recovery_of_one_node_leaves_the_others_runs(pg_url: str) -> None:
    async with node_store(pg_url, "a") as a, node_store(pg_url, "b") as b:
        ja = await a.join_node("a", lease=15.0, host="h", pid=1)
        jb = await b.join_node("b", lease=15.0, host="h", pid=2)
        job_id = await job(a, "j", "at-least-once")
        [(mine, _), (theirs, _)] = await enqueue(a, new(job_id, "j"), new(job_id, "j"))
        run_a = await claim_as(a, "a", ja.epoch, mine, job_id)
        run_b = await claim_as(b, "b", jb.epoch, theirs, job_id)
        got = await a.apply_one(RecoverOrphans(now=5.0, origin="a", nodes=["a"]))
        assert got == [(run_a, mine, "replay")]
        assert (await b.run(run_b)).status == "running"  # type: ignore[union-attr]


async def _record(store: Store, run_id: int, pgid: int) -> None:
    op = RecordProcess(run_id=run_id, pgid=pgid, start=1, clock="boot")
    assert await store.apply_one(op) is True


async def test_start_recovery_ends_the_groups_of_the_runs_it_takes_on_its_host(
    pg_url: str,
) -> None:
    async with (
        node_store(pg_url, "a") as a,
        node_store(pg_url, "b") as b,
        node_store(pg_url, "c") as c,
        node_store(pg_url, "d") as d,
    ):
        ja = await a.join_node("a", lease=15.0, host="h1", pid=1)
        jb = await b.join_node("b", lease=15.0, host="h1", pid=2)  # alive: its runs are its
        jc = await c.join_node("c", lease=15.0, host="h2", pid=3)  # left, on another host
        jd = await d.join_node("d", lease=15.0, host="h1", pid=4)  # left, on this host
        job_id = await job(a, "j", "at-least-once")
        ids = [i for i, _ in await enqueue(a, *(new(job_id, "j") for _ in range(5)))]
        runs = {
            "a": await claim_as(a, "a", ja.epoch, ids[0], job_id),
            "b": await claim_as(b, "b", jb.epoch, ids[1], job_id),
            "c": await claim_as(c, "c", jc.epoch, ids[2], job_id),
            "d": await claim_as(d, "d", jd.epoch, ids[3], job_id),
            "gone": await claim_as(a, "gone", 0, ids[4], job_id),  # a node with no row
        }
        for pgid, (_, run_id) in enumerate(sorted(runs.items()), start=100):
            assert run_id
            await _record(a, run_id, pgid)
        await c.leave_node("c", jc.epoch)
        await d.leave_node("d", jd.epoch)
        got = {row[0] for row in await a.node_processes("a", host="h1")}
        assert got == {runs["a"], runs["d"], runs["gone"]}
        taken = await a.apply_one(RecoverOrphans(now=5.0, origin="a", nodes=["a"]))
        assert {run_id for run_id, _, _ in taken} == got | {runs["c"]}  # c's: its host's


async def test_a_rescue_ends_the_groups_on_its_host_before_the_guarantee(pg_url: str) -> None:
    async with (
        node_store(pg_url, "a") as a,
        node_store(pg_url, "b") as b,
        node_store(pg_url, "c") as c,
    ):
        ja = await a.join_node("a", lease=SHORT, host="h1", pid=1)
        await b.join_node("b", lease=15.0, host="h1", pid=2)
        jc = await c.join_node("c", lease=SHORT, host="h2", pid=3)
        job_id = await job(a, "j", "at-least-once")
        ids = [i for i, _ in await enqueue(a, *(new(job_id, "j") for _ in range(3)))]
        run_a = await claim_as(a, "a", ja.epoch, ids[0], job_id)
        run_c = await claim_as(c, "c", jc.epoch, ids[1], job_id)
        run_s = await claim_as(a, "gone", 0, ids[2], job_id)
        assert run_a and run_c and run_s
        for pgid, run_id in enumerate((run_a, run_c, run_s), start=100):
            await _record(a, run_id, pgid)
        await eventually(
            lambda: _all_expired(b, {"a", "c"}), what="a's and c's leases ran out on the server"
        )
        handed: list[tuple[int, int, int, str]] = []
        states: list[str] = []

        async def end_groups(rows: list[tuple[int, int, int, str]]) -> dict[int, str]:
            handed.extend(rows)
            for run_id, _, _, _ in rows:  # the guarantee has not applied yet
                found = await b.run(run_id)
                states.append(found.status if found is not None else "?")
            return {run_id: "killed" for run_id, _, _, _ in rows}

        done = await b.rescue_nodes(rescuer="b", origin="b", host="h1", end_groups=end_groups)
        assert {r.node for r in done} >= {"a", "c"}
        assert sorted(handed) == [(run_a, 100, 1, "boot"), (run_s, 102, 1, "boot")]
        assert states == ["running", "running"]
        process = {r: (await b.run(r)).process for r in (run_a, run_c, run_s)}  # type: ignore[union-attr]
        assert process == {run_a: "killed", run_c: None, run_s: "killed"}


async def _all_expired(store: Store, names: set[str]) -> bool:
    return names <= {n.name for n in await store.nodes() if n.status == "expired"}
