"""Two runtimes on one PostgreSQL database, in one process: node ``a`` stops renewing its
lease (its clock is a fake one that never moves, as a paused process's would not), node
``b`` rescues its running run by the run's delivery guarantee, and ``a``'s late outcome
is refused; when ``a``'s clock moves again it finds itself fenced, cancels what it still
runs and joins again with a new epoch.

Lease expiry is on the server's clock: ``a`` joined with a one-second lease and never
renews, so it expires a second later; ``b`` (real clock) renews and rescues every third
of a second, ending first what ``a``'s runs left running on this host (a shell body's
process group). No fixed sleeps: every wait is on a condition (``eventually``, ``wait``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import asyncpg
import msgspec
import pytest

from shepherd.actors.cluster import ClusterConfig
from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import Config, EnqueueRequest, JobSpec, RunContext, Runtime
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


class Body:
    """A target that records each execution, and on node ``a`` waits for ``gate``."""

    def __init__(self, node: str, gate: anyio.Event | None = None) -> None:
        self.node = node
        self.gate = gate
        self.ran: list[tuple[str, int]] = []

    async def __call__(self, ctx: RunContext) -> str:
        self.ran.append((self.node, ctx.attempt))
        if self.gate is not None:
            await self.gate.wait()
        return f"done by {self.node}"


def _config(url: str, node: str, lease: float = 1.0) -> Config:
    return Config(database=url, cluster=ClusterConfig(node=node, lease=lease), shutdown_grace=0.0)


# The node that watches and rescues keeps a longer lease: on a loaded machine (the suite
# runs on every core) a one-second lease of its own could run out between two renewals.
WATCHER = 5.0


@pytest.mark.parametrize("guarantee", ["at-least-once", "at-most-once"])
async def test_a_node_that_stops_renewing_is_rescued_and_its_late_outcome_refused(
    pg_url: str, guarantee: str
) -> None:
    gate = anyio.Event()
    on_a, on_b = Body("a", gate), Body("b")
    frozen = FakeClock()  # a's timers never fire: it never renews its lease
    async with Runtime.open(_config(pg_url, "a"), targets={"body": on_a}, clock=frozen) as a:
        await a.add_job(JobSpec(name="j", target="body", delivery_guarantee=guarantee))  # type: ignore[arg-type]
        dispatch_id = await a.enqueue("j", {})
        await eventually(lambda: on_a.ran, what="the body running on a")
        epoch_a = a._actors["cluster"].membership.epoch
        async with Runtime.open(_config(pg_url, "b", WATCHER), targets={"body": on_b}) as b:
            if guarantee == "at-least-once":
                final = await b.wait(dispatch_id, timeout=20)
                assert (final.status, final.attempt) == ("done", 2)  # one replay, on b
                assert on_b.ran == [("b", 2)]
            else:
                await eventually(
                    lambda: _status(b, dispatch_id, "dead"), timeout=20, what="dead letter"
                )
                final = await b.dispatch(dispatch_id)
                assert final is not None
                assert (final.dead_reason, final.outcome) == ("crashed", "crashed")
                assert on_b.ran == []  # at most once: never again
            nodes = {n.name: n for n in await b.nodes()}
            assert nodes["a"].status == "dead" and nodes["a"].rescued_by == "b"
            assert nodes["a"].epoch > epoch_a and nodes["b"].status == "alive"
            [first] = await b.runs(dispatch_id=dispatch_id, status="crashed")
            assert (first.attempt, first.reason) == (1, "orphaned")  # a's run, rescued

            gate.set()  # a's body ends now: its outcome carries a stale epoch
            await eventually(
                lambda: a.statistics()["dispatcher"]["fenced"] >= 1, what="a's outcome refused"
            )
            after = await b.dispatch(dispatch_id)
            assert after is not None and after.status == final.status
            assert after.result == final.result  # b's outcome stands, not a's
            run = await b.run(first.id)
            assert run is not None and run.status == "crashed"
            assert on_a.ran == [("a", 1)]

            frozen.advance(1.0)  # a's clock moves: its renew finds it fenced, it rejoins
            member = a._actors["cluster"].membership
            await eventually(lambda: member.epoch > nodes["a"].epoch, what="a joined again")
            assert member.fenced == 1 and await _alive(b, "a")


async def _status(rt: Runtime, dispatch_id: int, status: str) -> bool:
    d = await rt.dispatch(dispatch_id)
    return d is not None and d.status == status


async def _alive(rt: Runtime, node: str) -> bool:
    return any(n.name == node and n.status == "alive" for n in await rt.nodes())


async def test_a_node_stopped_gracefully_leaves_and_is_not_rescued(pg_url: str) -> None:
    async with Runtime.open(_config(pg_url, "b", WATCHER), targets={"body": Body("b")}) as b:
        async with Runtime.open(_config(pg_url, "a"), targets={"body": Body("a")}) as a:
            assert a.instance == "a"
            await eventually(lambda: _alive(b, "a"), what="a alive")
        [left] = [n for n in await b.nodes() if n.name == "a"]
        assert left.status == "left" and left.rescued_by is None


async def test_a_fenced_node_cancels_the_runs_it_still_holds_and_carries_on(pg_url: str) -> None:
    ended: list[str] = []

    async def forever(ctx: RunContext) -> str:
        try:
            await anyio.sleep_forever()
        finally:
            ended.append(ctx.job.name)
        return "never"

    frozen = FakeClock()
    async with Runtime.open(_config(pg_url, "a"), targets={"body": forever}, clock=frozen) as a:
        await a.add_job(JobSpec(name="j", target="body", delivery_guarantee="at-most-once"))
        dispatch_id = await a.enqueue("j", {})
        await eventually(lambda: _running(a, dispatch_id), what="the run on a")
        async with Runtime.open(_config(pg_url, "b", WATCHER), targets={"body": Body("b")}) as b:
            await eventually(lambda: _status(b, dispatch_id, "dead"), timeout=20, what="rescue")
            frozen.advance(1.0)  # a renews, finds itself fenced: cancels its run, rejoins
            await eventually(lambda: ended == ["j"], what="a's stale run cancelled")
            member = a._actors["cluster"].membership
            await eventually(lambda: member.fenced == 1 and member.epoch > 0, what="fenced")
            await eventually(
                lambda: a.statistics()["dispatcher"]["fenced"] >= 1, what="its outcome refused"
            )
            final = await b.dispatch(dispatch_id)
            assert final is not None and final.status == "dead"  # not "cancelled" by a
            await eventually(lambda: _alive(b, "a"), what="a alive again")
            again = await a.enqueue("j", {})  # and it carries on
            await eventually(lambda: _started(b, again), what="the next dispatch taken")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs")
async def test_a_rescue_ends_a_paused_nodes_shell_body_on_its_host(
    pg_url: str, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    body = f"sleep 300 & echo $$ $! >> {pids}; wait"  # the group's leader and a grandchild
    frozen = FakeClock()
    async with Runtime.open(_config(pg_url, "a"), clock=frozen) as a:
        await a.add_job(JobSpec(name="sh", executor="shell", target=body))
        dispatch_id = await a.enqueue("sh", {})
        await eventually(lambda: _group(pids) and _recorded(a, dispatch_id), what="a's body")
        group = _group(pids)
        assert all(_live(p) for p in group)
        async with Runtime.open(_config(pg_url, "b", WATCHER)) as b:
            await eventually(lambda: _status(b, dispatch_id, "dead"), timeout=20, what="rescue")
            [run] = await b.runs(dispatch_id=dispatch_id, status="crashed")
            assert run.process == "killed"  # ended by b before the guarantee applied
            assert not any(_live(p) for p in group)


async def _recorded(rt: Runtime, dispatch_id: int) -> bool:
    return any(r.pgid for r in await rt.runs(dispatch_id=dispatch_id, status="running"))


def _group(pids: Path) -> list[int]:
    """The two pids the body wrote (none until its line is whole)."""
    line = pids.read_text() if pids.exists() else ""
    return [int(p) for p in line.split()] if line.endswith("\n") else []


def _live(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its parent is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def _started(rt: Runtime, dispatch_id: int) -> bool:
    d = await rt.dispatch(dispatch_id)
    return d is not None and d.status in ("running", "done")


async def _running(rt: Runtime, dispatch_id: int) -> bool:
    d = await rt.dispatch(dispatch_id)
    return d is not None and d.status == "running"


async def test_claims_another_node_won_leave_the_slots_to_the_next_dispatches(
    pg_url: str,
) -> None:
    """A pass whose claims all went to another node starts another pass at once: with
    nothing of this node's running, no outcome would wake it for the rest of the queue
    (health ticks are an hour apart here, so only that wake can)."""
    gate = anyio.Event()
    body = Body("b", gate)
    cfg = msgspec.structs.replace(
        _config(pg_url, "b", WATCHER), concurrency=2, health_interval=3600.0
    )
    async with Runtime.open(cfg, targets={"body": body}) as b:
        await b.add_job(JobSpec(name="j", target="body"))
        ids = await b.enqueue_many([EnqueueRequest(job="j") for _ in range(6)])
        await eventually(lambda: len(body.ran) == 2, what="two runs holding both slots")
        first, taken, rest = ids[:2], ids[2:4], ids[4:]
        assert all([await _running(b, d) for d in first])
        conn = await asyncpg.connect(pg_url)
        try:  # another node's claim of the next two, as b's window still holds them
            await conn.execute(
                "UPDATE dispatches SET status = 'running' WHERE id = ANY($1::bigint[])", taken
            )
        finally:
            await conn.close()
        lost = b.statistics()["dispatcher"]["lost"]
        gate.set()
        for d in first + rest:
            final = await b.wait(d, timeout=20)
            assert final.status == "done"
        assert b.statistics()["dispatcher"]["lost"] == lost + 2
        assert len(body.ran) == 4


async def test_a_node_in_a_lane_runs_its_share_first_then_the_rest_of_the_queue(
    pg_url: str,
) -> None:
    """A node kept to its lane (as after losing claims to a second node) whose partner
    takes nothing: it runs its lane's share of the backlog first, in order, then finds
    its lane dry and takes the other share from the head. Both slots are held while the
    backlog is queued and the lane drawn, so no pass admits anything meanwhile; the
    lease is long, so no renew draws the lane again."""
    gate = anyio.Event()
    ran: list[int] = []

    async def body(ctx: RunContext) -> None:
        if ctx.payload and ctx.payload.get("hold"):
            await gate.wait()
        else:
            ran.append(ctx.dispatch_id)

    cfg = msgspec.structs.replace(_config(pg_url, "b", 60.0), concurrency=2)
    async with Runtime.open(cfg, targets={"body": body}) as b:
        await b.add_job(JobSpec(name="j", target="body"))
        held = [await b.enqueue("j", {"hold": True}) for _ in range(2)]
        await eventually(lambda: _all_running(b, held), what="both slots held")
        ids = await b.enqueue_many([EnqueueRequest(job="j") for _ in range(12)])
        await eventually(
            lambda: b.statistics()["dispatcher"]["queued"] == 12, what="the backlog held"
        )
        member = b._actors["cluster"].membership
        member.rank, member.count, member.single = 1, 2, False  # a partner that takes none
        b._actors["dispatcher"]._loader.compete(1, 2)
        gate.set()
        for d in ids:
            assert (await b.wait(d, timeout=20)).status == "done"
        seqs = {d: (await b.dispatch(d)).seq for d in ids}
        mine = [d for d in ids if seqs[d] % 2 == 1]
        assert ran[: len(mine)] == mine  # its own share first, in order
        assert ran[len(mine) :] == [d for d in ids if d not in mine]  # then the rest
        stats = b.statistics()["dispatcher"]
        assert stats["lane"] is None and stats["lanes"] == 2  # drawn, then dry: all again


async def _all_running(rt: Runtime, ids: list[int]) -> bool:
    return all([await _running(rt, d) for d in ids])


async def test_a_node_in_a_lane_holds_only_its_lanes_share_of_its_own_enqueues(
    pg_url: str,
) -> None:
    gate = anyio.Event()

    async def body(ctx: RunContext) -> None:
        await gate.wait()

    cfg = msgspec.structs.replace(_config(pg_url, "b", 60.0), concurrency=1)
    async with Runtime.open(cfg, targets={"body": body}) as b:
        await b.add_job(JobSpec(name="j", target="body"))
        first = await b.enqueue("j", {})
        await eventually(lambda: _running(b, first), what="the slot held")
        member = b._actors["cluster"].membership
        member.rank, member.count, member.single = 0, 2, False
        b._actors["dispatcher"]._loader.compete(0, 2)
        ids = await b.enqueue_many([EnqueueRequest(job="j") for _ in range(8)])
        seqs = [(await b.dispatch(d)).seq for d in ids]
        mine = sum(1 for s in seqs if s % 2 == 0)
        await eventually(
            lambda: b.statistics()["dispatcher"]["queued"] == mine, what="its lane's share"
        )
        more = await b.enqueue_many([EnqueueRequest(job="j") for _ in range(4)])
        seqs = [(await b.dispatch(d)).seq for d in more]
        mine += sum(1 for s in seqs if s % 2 == 0)
        await eventually(
            lambda: b.statistics()["dispatcher"]["queued"] == mine, what="its share of more"
        )
        assert b.statistics()["dispatcher"]["lane"] == [0, 2]
        gate.set()
