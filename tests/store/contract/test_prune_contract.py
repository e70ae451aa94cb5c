"""Store contract: the pruner's retention ops (store/ops/retention.py) — each one
bounded batch that names a cursor when it is full, selecting exactly what its rule
names and never what must stay (running runs, queued dispatches, a dead letter's runs
until it goes, a keyed dispatch inside its key's lifetime, pending approvals, open
groups, the newest row of each table). Through the protocol and the op Structs only."""

from __future__ import annotations

import pytest

from shepherd.store.models import ApprovalPolicy
from shepherd.store.ops import (
    Attempt,
    CancelDispatch,
    CreateGroup,
    InsertDeliveries,
    InsertMessages,
    MarkMessages,
    NewDelivery,
    NewMessage,
    PruneApprovals,
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneGroups,
    PruneMessages,
    PruneRunsBefore,
    PruneRunsPerJob,
    RecordAttempts,
    ReportMember,
    ResolveApproval,
)
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, claim, enqueue, finish, new

pytestmark = pytest.mark.anyio


async def _runs(store: Store, job_id: int, n: int, *, at: float = 4.0, **end: object) -> list[int]:
    """``n`` dispatches of ``job_id``, each run once and finished at ``at``; run ids."""
    job = await store.job(job_id)
    assert job is not None
    out: list[int] = []
    rows = [new(job_id, job.spec.name) for _ in range(n)]
    for d, _ in await enqueue(store, *rows, now=at - 2):
        run_id = await claim(store, d, now=at - 1)
        assert run_id is not None
        await finish(store, run_id, d, now=at, **end)  # type: ignore[arg-type]
        out.append(run_id)
    return out


async def _run_ids(store: Store, job: str) -> list[int]:
    return sorted(r.id for r in await store.runs(job=job, limit=1000))


async def test_runs_per_job_keep_the_newest_finished_runs_of_each_job(store: Store) -> None:
    a = await add_job(store, "a")
    b = await add_job(store, "b")
    a_runs = await _runs(store, a, 4)
    [(busy, _)] = await enqueue(store, new(a))
    running = await claim(store, busy)
    b_runs = await _runs(store, b, 3)
    got = await store.apply_one(PruneRunsPerJob(keep=2, limit=100))
    assert got == Pruned(3, None)
    assert await _run_ids(store, "a") == sorted([*a_runs[2:], running])  # running stays
    assert await _run_ids(store, "b") == b_runs[1:]
    assert await store.apply_one(PruneRunsPerJob(keep=2, limit=100)) == Pruned(0, None)


async def test_runs_per_job_resume_from_their_cursor(store: Store) -> None:
    a = await add_job(store, "a")
    b = await add_job(store, "b")
    a_runs = await _runs(store, a, 5)
    b_runs = await _runs(store, b, 3)
    full = await store.apply_one(PruneRunsPerJob(keep=1, limit=2))
    assert full.deleted == 2 and full.cursor == a - 1  # the batch filled on job a
    assert await _run_ids(store, "a") == a_runs[2:]
    one_job = await store.apply_one(
        PruneRunsPerJob(keep=1, limit=100, after_job=full.cursor or 0, max_jobs=1)
    )
    assert one_job == Pruned(2, a)  # job a done; look at the jobs after it next
    rest = await store.apply_one(PruneRunsPerJob(keep=1, limit=100, after_job=a))
    assert rest == Pruned(2, None)
    assert await _run_ids(store, "a") == a_runs[4:]
    assert await _run_ids(store, "b") == b_runs[2:]


async def test_runs_before_a_cutoff_spare_running_runs_dead_letters_and_the_newest(
    store: Store,
) -> None:
    a = await add_job(store, "a")
    old = await _runs(store, a, 3, at=4.0)
    dead = await _runs(store, a, 1, at=5.0, outcome="error", next="dead", dead_reason="failed")
    [(busy, _)] = await enqueue(store, new(a), now=5.0)
    running = await claim(store, busy, now=6.0)
    last = await _runs(store, a, 1, at=7.0)  # the newest run: stays
    assert await store.apply_one(PruneRunsBefore(before=100.0, limit=2)) == Pruned(2, 0)
    assert await store.apply_one(PruneRunsBefore(before=100.0, limit=2)) == Pruned(1, None)
    assert await _run_ids(store, "a") == sorted([*dead, running or 0, *last])
    assert old[0] not in await _run_ids(store, "a")


async def test_ended_dispatches_go_by_status_and_age_and_keyed_ones_by_their_key(
    store: Store,
) -> None:
    a = await add_job(store, "a")
    [(q1, _), (q2, _), (k, _)] = await enqueue(
        store, new(a), new(a), new(a, idempotency_key="K"), now=2.0
    )
    for d in (q1, k):
        run_id = await claim(store, d, now=3.0)
        assert run_id is not None and await finish(store, run_id, d, now=4.0) == 0
    assert await store.apply_one(CancelDispatch(q2, 4.0)) == "cancelled"
    [(live, _)] = await enqueue(store, new(a), now=5.0)  # queued (and the newest): stays
    op = PruneDispatches(status="done", before=10.0, keyed_before=3.0, limit=100)
    assert await store.apply_one(op) == Pruned(1, None)  # q1; k's key still lives
    assert {d.id for d in await store.dispatches(limit=100)} == {q2, k, live}
    op = PruneDispatches(status="done", before=10.0, keyed_before=10.0, limit=100)
    assert await store.apply_one(op) == Pruned(1, None)
    op = PruneDispatches(status="cancelled", before=4.0, keyed_before=10.0, limit=100)
    assert await store.apply_one(op) == Pruned(0, None)  # not before the cutoff
    op = PruneDispatches(status="cancelled", before=5.0, keyed_before=10.0, limit=1)
    assert await store.apply_one(op) == Pruned(1, 0)  # a full batch: send it again
    assert [d.id for d in await store.dispatches(limit=100)] == [live]


async def test_a_dead_letter_goes_with_its_runs(store: Store) -> None:
    a = await add_job(store, "a")
    dead = await _runs(store, a, 2, outcome="error", next="dead", dead_reason="failed")
    ok = await _runs(store, a, 1)
    [(live, _)] = await enqueue(store, new(a), now=5.0)
    op = PruneDispatches(status="dead", before=10.0, keyed_before=10.0, limit=100)
    assert await store.apply_one(op) == Pruned(2, None, 2)
    assert await _run_ids(store, "a") == ok
    left = await store.dispatches(limit=100)
    assert sorted((d.status, d.id == live) for d in left) == [("done", False), ("queued", True)]
    assert not set(dead) & set(await _run_ids(store, "a"))


async def test_messages_go_by_status_and_age_and_the_newest_stays(store: Store) -> None:
    rows = [NewMessage(from_agent="x", to_agent="y", body=str(i)) for i in range(5)]
    ids = await store.apply_one(InsertMessages(rows, 1.0))
    [later] = await store.apply_one(InsertMessages([rows[0]], 50.0))
    [reply] = await store.apply_one(
        InsertMessages([NewMessage(from_agent="y", to_agent="x", body="re", reply_to=ids[0])], 60.0)
    )
    await store.apply_one(MarkMessages([*ids[:4], later], "read", 2.0))
    await store.apply_one(MarkMessages([ids[4], reply], "delivered", 2.0))
    op = PruneMessages(status="read", before=10.0, limit=3)
    assert await store.apply_one(op) == Pruned(3, 0)
    assert await store.apply_one(op) == Pruned(1, None)
    assert {m.id for m in await store.messages(limit=100)} == {ids[4], later, reply}
    r = await store.message(reply)
    assert r is not None and r.reply_to is None  # its parent went: the link is cleared
    op = PruneMessages(status="delivered", before=100.0, limit=100)
    assert await store.apply_one(op) == Pruned(1, None)  # the reply is the newest: stays
    assert {m.id for m in await store.messages(limit=100)} == {later, reply}


async def test_deliveries_go_by_status_and_age(store: Store) -> None:
    row = NewDelivery(
        kind="announce", body="b", channel=None, target=None, max_attempts=1, next_attempt_at=1.0
    )
    [s1, s2, f1, p1, last] = await store.apply_one(InsertDeliveries([row] * 5, 1.0))
    attempts = [Attempt(id=s1, ok=True), Attempt(id=s2, ok=True), Attempt(id=f1, ok=False)]
    await store.apply_one(RecordAttempts(attempts, 2.0))
    await store.apply_one(RecordAttempts([Attempt(id=last, ok=True)], 3.0))
    assert await store.apply_one(PruneDeliveries(status="sent", before=2.5, limit=100)) == Pruned(
        2, None
    )
    assert await store.apply_one(PruneDeliveries(status="failed", before=1.5, limit=100)) == Pruned(
        0, None
    )
    assert await store.apply_one(PruneDeliveries(status="failed", before=9.0, limit=1)) == Pruned(
        1, 0
    )
    assert await store.apply_one(PruneDeliveries(status="sent", before=9.0, limit=100)) == Pruned(
        0, None
    )  # the newest row stays
    assert [d.id for d in await store.deliveries()] == [last, p1]


async def test_resolved_approvals_go_and_pending_ones_stay(store: Store) -> None:
    g = await add_job(
        store,
        "g",
        approval=ApprovalPolicy(),
        options={"delivery_to": "ops", "delivery_channel": "log"},
    )
    await enqueue(store, *[new(g, "g") for _ in range(3)])
    first, second, third = sorted(await store.approvals(), key=lambda a: a.id)
    for a, decision in ((first, "approve"), (second, "reject")):
        op = ResolveApproval(approval_id=a.id, decision=decision, now=5.0, origin=ORIGIN)  # type: ignore[arg-type]
        await store.apply_one(op)
    assert await store.apply_one(PruneApprovals(before=5.0, limit=100)) == Pruned(0, None)
    assert await store.apply_one(PruneApprovals(before=6.0, limit=100)) == Pruned(2, None)
    assert [a.id for a in await store.approvals()] == [third.id]


async def test_ended_groups_go_with_their_members_and_open_ones_stay(store: Store) -> None:
    def group(name: str) -> CreateGroup:
        return CreateGroup(
            name=name, members=["m1", "m2"], timeout=60.0, heartbeat_window=30.0, now=1.0
        )

    done = await store.apply_one(group("done"))
    failed = await store.apply_one(group("failed"))
    still = await store.apply_one(group("open"))
    for gid, report in ((done, "completed"), (failed, "failed")):
        for label in ("m1", "m2"):
            await store.apply_one(ReportMember(group=gid, label=label, report=report, now=2.0))  # type: ignore[arg-type]
    ended = await store.task_group(done)
    assert ended is not None and ended.status == "completed"
    last = await store.apply_one(group("last"))  # the newest group: stays whatever it is
    assert await store.apply_one(PruneGroups(before=2.0, limit=100)) == Pruned(0, None)
    assert await store.apply_one(PruneGroups(before=3.0, limit=1)) == Pruned(1, 0)
    assert await store.apply_one(PruneGroups(before=3.0, limit=1)) == Pruned(1, 0)
    assert await store.apply_one(PruneGroups(before=3.0, limit=1)) == Pruned(0, None)
    assert await store.task_group(done) is None and await store.task_group(failed) is None
    kept = await store.task_group(still)
    assert kept is not None and [m.label for m in kept.members] == ["m1", "m2"]
    assert await store.task_group(last) is not None


async def test_pruning_dead_letters_never_lets_run_ids_go_back(store: Store) -> None:
    """The newest run may be a dead letter's while a newer dispatch waits: it stays when
    the dead letter goes, so the next run's id is past it (no id is handed out twice)."""
    a = await add_job(store, "a")
    [(dead, _), (waiting, _)] = await enqueue(store, new(a), new(a), now=1.0)
    run = await claim(store, dead, now=2.0)
    assert run is not None
    await finish(store, run, dead, now=3.0, outcome="error", next="dead", dead_reason="failed")
    op = PruneDispatches(status="dead", before=10.0, keyed_before=10.0, limit=100)
    assert (await store.apply_one(op)).deleted == 1
    again = await claim(store, waiting, now=11.0)
    assert again is not None and again > run
