"""PostgreSQL: approvals and task groups written by two nodes at once. A second
connection (another node's writer) holds its writes uncommitted, so the interleaving
is fixed, not left to chance.

- The last two members of a group finishing on two nodes still end the group, once.
- A job's ``max_pending`` holds when two nodes gate its dispatches at once.
- Two approvers of one approval on two nodes: one wins, the other gets the conflict.
- Two nodes expiring approvals split them (``SKIP LOCKED``): none waits, none twice.
"""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest

from shepherd.store.models import ApprovalPolicy, Seconds
from shepherd.store.ops import (
    CreateGroup,
    ExpireApprovals,
    InsertDispatches,
    ReportMember,
    ResolveApproval,
)
from shepherd.store.postgres import approvals, dispatches, groups
from shepherd.store.postgres import ops_table as _ops_table
from shepherd.store.postgres.engine import PgStore
from tests.helpers import eventually
from tests.store.conftest import waits_on_a_lock
from tests.store.contract.helpers import add_job, new

pytestmark = pytest.mark.anyio
assert _ops_table.READY


async def _while_open(store: PgStore, node: asyncpg.Connection, op: Any, first: Any) -> Any:
    """Run ``first(node)`` in an open transaction of the other node, then ``op`` on
    ``store`` until it commits or waits on a lock, then commit the node: ``op``'s
    result and ``first``'s."""
    tr = node.transaction()
    await tr.start()
    before = await first(node)
    results: list[Any] = []

    async def run() -> None:
        results.append(await store.apply_one(op))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await eventually(lambda: results or waits_on_a_lock(store), what="the second write")
        await tr.commit()
    return results[0], before


async def test_the_last_two_members_finishing_on_two_nodes_end_the_group_once(
    store: PgStore, node: asyncpg.Connection
) -> None:
    gid = await store.apply_one(
        CreateGroup(
            name="fan", members=["a", "b"], timeout=60.0, heartbeat_window=30.0, now=1.0,
            channel="log", target="ops",
        )
    )  # fmt: skip

    def report(label: str) -> ReportMember:
        return ReportMember(group=gid, label=label, report="completed", now=2.0)

    mine, theirs = await _while_open(
        store, node, report("b"), lambda conn: groups.report_member(conn, report("a"))
    )
    assert theirs.group_status == "open"  # b was not final when a's node counted
    assert mine.group_status == "completed" and mine.delivery_id is not None
    g = await store.task_group(gid)
    assert g is not None and g.status == "completed" and g.delivery_id == mine.delivery_id
    assert [d.id for d in await store.deliveries() if d.kind == "group"] == [mine.delivery_id]


async def test_max_pending_holds_when_two_nodes_gate_one_job_at_once(
    store: PgStore, node: asyncpg.Connection
) -> None:
    job = await add_job(store, "g", approval=ApprovalPolicy(max_pending=1))

    def insert() -> InsertDispatches:
        return InsertDispatches([new(job, "g")], "t", 2.0)

    [(mine, seq)], [(theirs, their_seq)] = await _while_open(
        store, node, insert(), lambda conn: dispatches.insert_dispatches(conn, insert())
    )
    assert seq == their_seq == 0
    assert [a.dispatch_id for a in await store.approvals(status="pending")] == [theirs]
    cancelled = await store.dispatch(mine)
    assert cancelled is not None and cancelled.last_error == "approval-backlog"


async def test_two_approvers_on_two_nodes_one_wins(
    store: PgStore, node: asyncpg.Connection
) -> None:
    job = await add_job(store, "g", approval=ApprovalPolicy())
    await store.apply_one(InsertDispatches([new(job, "g")], "t", 2.0))
    [a] = await store.approvals()

    def decide(decision: str, by: str) -> ResolveApproval:
        return ResolveApproval(
            approval_id=a.id,
            decision=decision,
            now=3.0,
            origin="t",
            by=by,  # type: ignore[arg-type]
        )

    mine, theirs = await _while_open(
        store,
        node,
        decide("reject", "bob"),
        lambda conn: approvals.apply_approval_op(conn, decide("approve", "alice")),
    )
    assert not theirs.conflict and theirs.dispatch is not None
    assert mine.conflict and mine.approval.status == "approved"
    d = await store.dispatch(a.dispatch_id)
    assert d is not None and d.status == "queued"


async def test_two_nodes_expiring_approvals_split_them(
    store: PgStore, node: asyncpg.Connection
) -> None:
    job = await add_job(store, "g", approval=ApprovalPolicy(timeout=Seconds(5.0)))
    await store.apply_one(InsertDispatches([new(job, "g"), new(job, "g")], "t", 2.0))
    expire = ExpireApprovals(now=100.0, origin="t", limit=1)
    mine, theirs = await _while_open(
        store, node, expire, lambda conn: approvals.apply_approval_op(conn, expire)
    )
    assert len(mine) == len(theirs) == 1  # the locked one skipped, the other taken
    assert mine[0].approval.id != theirs[0].approval.id
    assert await store.approvals(status="pending") == []
    assert len(await store.approvals(status="timed_out")) == 2
