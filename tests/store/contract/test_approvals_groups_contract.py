"""Store contract: approval gates (held at insert, resolved once, expired by deadline,
repaired, backlog) and task groups (members report, die, end the group once with its
summary's delivery) — through the protocol and the op Structs only."""

from __future__ import annotations

import pytest

from shepherd.store.models import ApprovalPolicy, Seconds
from shepherd.store.ops import (
    CreateGroup,
    ExpireApprovals,
    MarkDead,
    RepairApprovals,
    ReportMember,
    ResolveApproval,
)
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, enqueue, new

pytestmark = pytest.mark.anyio


async def _gated(store: Store, name: str = "g", **policy: object) -> int:
    gate = ApprovalPolicy(**policy)  # type: ignore[arg-type]
    return await add_job(
        store, name, approval=gate, options={"delivery_to": "ops", "delivery_channel": "log"}
    )


def _resolve(approval_id: int, decision: str, now: float = 5.0, **kw: object) -> ResolveApproval:
    return ResolveApproval(
        approval_id=approval_id,
        decision=decision,  # type: ignore[arg-type]
        now=now,
        origin=ORIGIN,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_gated_dispatch_is_held_with_a_pending_approval_and_its_request(
    store: Store,
) -> None:
    g = await _gated(store)
    free = await add_job(store, "free")
    [(held, seq), (plain, plain_seq)] = await enqueue(store, new(g, "g"), new(free, "free"))
    assert seq == 0 and plain_seq > 0  # held: not for the dispatcher
    d = await store.dispatch(held)
    assert d is not None and d.status == "awaiting_approval"
    [a] = await store.approvals()
    assert (a.dispatch_id, a.job_id, a.job_name, a.status, a.kind) == (
        held,
        g,
        "g",
        "pending",
        "enqueue",
    )
    assert a.deadline == pytest.approx(2.0 + 3600.0) and a.on_timeout == "reject"
    assert await store.approval(a.id) == a
    assert await store.next_approval_deadline() == pytest.approx(a.deadline)
    assert a.delivery_id is not None
    request = await store.delivery(a.delivery_id)
    assert request is not None and (request.kind, request.target, request.channel) == (
        "approval",
        "ops",
        "log",
    )
    assert f"shepherd approvals approve {a.id}" in request.body
    other = await store.dispatch(plain)
    assert other is not None and other.status == "queued"


async def test_approving_queues_with_a_new_seq_and_the_second_decision_conflicts(
    store: Store,
) -> None:
    g = await _gated(store)
    [(held, _)] = await enqueue(store, new(g, "g"))
    [a] = await store.approvals(status="pending")
    got = await store.apply_one(_resolve(a.id, "approve", by="alice"))
    assert not got.conflict and got.approval.status == "approved"
    assert got.approval.resolved_by == "alice" and got.approval.resolved_at == 5.0
    assert got.dispatch is not None and got.dispatch.id == held
    assert got.dispatch.status == "queued" and got.dispatch.seq > 0
    again = await store.apply_one(_resolve(a.id, "reject", now=6.0, by="bob"))
    assert again.conflict and again.approval.status == "approved"
    assert again.approval.resolved_by == "alice"
    assert await store.next_approval_deadline() is None
    assert await store.apply_one(_resolve(999_999, "approve")) is None


async def test_rejecting_cancels_the_dispatch_with_who_and_why(store: Store) -> None:
    g = await _gated(store)
    [(held, _)] = await enqueue(store, new(g, "g"))
    [a] = await store.approvals()
    got = await store.apply_one(_resolve(a.id, "reject", by="bob", reason="not today"))
    assert got.dispatch is None and got.approval.status == "rejected"
    assert got.approval.reason == "not today"
    d = await store.dispatch(held)
    assert d is not None and (d.status, d.outcome, d.last_error) == (
        "cancelled",
        "cancelled",
        "rejected by bob: not today",
    )
    assert [x.id for x in await store.approvals(status="rejected", job="g")] == [a.id]
    assert await store.approvals(job="other") == []


async def test_expiry_follows_on_timeout_earliest_first(store: Store) -> None:
    yes = await _gated(store, "yes", on_timeout="approve", timeout=Seconds(10.0))
    no = await _gated(store, "no", timeout=Seconds(5.0))
    [(d_yes, _)] = await enqueue(store, new(yes, "yes"))
    [(d_no, _)] = await enqueue(store, new(no, "no"))
    assert await store.next_approval_deadline() == pytest.approx(7.0)
    assert await store.apply_one(ExpireApprovals(now=6.0, origin=ORIGIN)) == []
    got = await store.apply_one(ExpireApprovals(now=100.0, origin=ORIGIN))
    assert [(r.approval.job_name, r.approval.status) for r in got] == [
        ("no", "timed_out"),
        ("yes", "approved"),
    ]
    assert all(r.approval.resolved_by == "timeout" for r in got)
    cancelled, queued = await store.dispatch(d_no), await store.dispatch(d_yes)
    assert cancelled is not None and cancelled.last_error == "approval timed out"
    assert queued is not None and queued.status == "queued"
    assert await store.apply_one(ExpireApprovals(now=200.0, origin=ORIGIN)) == []


async def test_past_max_pending_a_new_dispatch_is_cancelled_as_backlog(store: Store) -> None:
    g = await _gated(store, max_pending=2)
    rows = await enqueue(store, *[new(g, "g") for _ in range(3)])
    assert [seq for _, seq in rows] == [0, 0, 0]
    third = await store.dispatch(rows[2][0])
    assert third is not None and (third.status, third.last_error) == (
        "cancelled",
        "approval-backlog",
    )
    assert len(await store.approvals(status="pending")) == 2


async def test_a_run_now_is_not_gated_by_default_and_sources_choose_kinds(store: Store) -> None:
    g = await _gated(store)
    only_chain = await _gated(store, "c", sources=["chain"])
    rows = await enqueue(
        store, new(g, "g", kind="run_now"), new(only_chain, "c"), new(g, "g", kind="retry")
    )
    assert all(seq > 0 for _, seq in rows)
    assert await store.approvals() == []


async def test_repair_settles_dispatches_whose_approval_ended(store: Store) -> None:
    g = await _gated(store)
    rows = await enqueue(store, new(g, "g"), new(g, "g"))
    assert await store.apply_one(RepairApprovals(now=3.0, origin=ORIGIN)) == []
    assert len(await store.approvals(status="pending")) == 2
    for d, _ in rows:
        held = await store.dispatch(d)
        assert held is not None and held.status == "awaiting_approval"


# -- task groups ------------------------------------------------------------------------


def _group(name: str = "nightly", **kw: object) -> CreateGroup:
    values: dict[str, object] = {
        "members": ["a", "b"],
        "timeout": 60.0,
        "heartbeat_window": 30.0,
        "now": 1.0,
    }
    values.update(kw)
    return CreateGroup(name=name, **values)  # type: ignore[arg-type]


def _report(group: int | str, label: str, report: str, now: float, **kw: object) -> ReportMember:
    return ReportMember(group=group, label=label, report=report, now=now, **kw)  # type: ignore[arg-type]


async def test_a_group_is_created_once_per_open_name_and_reads_back(store: Store) -> None:
    gid = await store.apply_one(_group(created_by="me", channel="log", target="ops"))
    assert gid > 0
    assert await store.apply_one(_group()) == 0  # an open group of that name exists
    g = await store.task_group(gid)
    assert g is not None and (g.name, g.status, g.created_by) == ("nightly", "open", "me")
    assert [(m.label, m.status) for m in g.members] == [("a", "pending"), ("b", "pending")]
    assert await store.task_group("nightly") == g
    assert [x.id for x in await store.task_groups(status="open")] == [gid]
    assert [x.id for x in await store.task_groups(ids=[gid, 999])] == [gid]
    assert [x.id for x in await store.task_groups()] == [gid]
    assert await store.group_deadlines() == {gid: pytest.approx(61.0)}


async def test_members_report_and_the_last_final_one_ends_the_group_once(store: Store) -> None:
    gid = await store.apply_one(_group(channel="log", target="ops"))
    got = await store.apply_one(_report("nightly", "a", "started", 2.0))
    assert (got.result, got.member_status, got.group_status) == ("ok", "started", "open")
    beat = await store.apply_one(_report(gid, "a", "heartbeat", 50.0))
    assert beat.result == "ok" and beat.member_status == "started"
    assert await store.group_deadlines([gid]) == {gid: pytest.approx(61.0)}
    assert (await store.apply_one(_report(gid, "zz", "started", 3.0))).result == "no-member"
    assert (await store.apply_one(_report("missing", "a", "started", 3.0))).result == "no-group"
    done = await store.apply_one(_report(gid, "a", "completed", 51.0, message="fine"))
    assert (done.member_status, done.group_status, done.delivery_id) == ("completed", "open", None)
    assert (await store.apply_one(_report(gid, "a", "failed", 52.0))).result == "final"
    last = await store.apply_one(_report(gid, "b", "failed", 53.0, message="boom"))
    assert last.group_status == "failed" and last.delivery_id is not None
    g = await store.task_group(gid)
    assert g is not None and (g.status, g.completed_at, g.delivery_id) == (
        "failed",
        53.0,
        last.delivery_id,
    )
    assert g.summary is not None and g.summary.startswith("Task group nightly failed: 1/2 ok")
    sent = await store.delivery(last.delivery_id)
    assert sent is not None and (sent.kind, sent.target, sent.outcome) == ("group", "ops", "failed")
    assert sent.job_name == "group:nightly"
    late = await store.apply_one(_report(gid, "b", "heartbeat", 54.0))
    assert late.result == "final"
    assert await store.task_groups(status="open") == []
    assert await store.group_deadlines() == {}
    assert await store.apply_one(_group(now=60.0)) > gid  # the name is free again


async def test_mark_dead_rechecks_deadlines_and_ends_the_group(store: Store) -> None:
    gid = await store.apply_one(_group())  # no target: the summary stays on the group
    await store.apply_one(_report(gid, "a", "heartbeat", 50.0))
    early = await store.apply_one(MarkDead(group_id=gid, now=61.0))
    assert (early.result, early.dead, early.group_status) == ("ok", ["b"], "open")
    late = await store.apply_one(MarkDead(group_id=gid, now=80.0))
    assert (late.dead, late.group_status, late.delivery_id) == (["a"], "failed", None)
    g = await store.task_group(gid)
    assert g is not None and [(m.label, m.status, m.error) for m in g.members] == [
        ("a", "dead", "timed out"),
        ("b", "dead", "timed out"),
    ]
    assert g.summary is not None and "[DEAD] a: timed out" in g.summary
    closed = await store.apply_one(MarkDead(group_id=gid, now=90.0))
    assert (closed.result, closed.group_status) == ("closed", "failed")
    assert (await store.apply_one(MarkDead(group_id=999, now=90.0))).result == "no-group"


async def test_a_group_whose_members_all_complete_is_completed(store: Store) -> None:
    gid = await store.apply_one(_group(members=["only"]))
    got = await store.apply_one(_report(gid, "only", "completed", 2.0))
    assert got.group_status == "completed"
    g = await store.task_group(gid)
    assert g is not None
    assert g.summary == "Task group nightly completed: 1/1 ok\n[ok] only: completed"
