"""Store contract for a dispatcher pass's writes as the dispatcher sends them: every
claim with its key, a batch of claims and a batch of outcomes of every kind, and the
outcomes of one pass with the next pass's claims in one ``apply`` (one transaction).
On PostgreSQL these take the one-statement path (``store.postgres.claims_fast``);
what is named twice in one op takes the other one, with the same answers.

- claims in one op: run ids rising in claim order, ``None`` for a dispatch that is not
  queued, 0 for one whose key another run holds (settled ``skipped``);
- outcomes in one op: done, retried (a new seq, its key released and claimed again by
  the retry), dead, cancelled, and a stale run refused (``None``);
- a run named twice in one op: its first outcome counts;
- finishes and claims in one batch commit together, and a failed op in that batch
  leaves the others committed;
- PostgreSQL: a pass under a node's stale epoch writes nothing (every outcome and
  claim ``None``); the current epoch's claim wins.
"""

from __future__ import annotations

import pytest

from shepherd.store.errors import StoreError
from shepherd.store.factory import open_store
from shepherd.store.ops import ClaimRun, ClaimRuns, FinishRun, FinishRuns, MarkMessages
from shepherd.store.protocol import Store
from tests.store.contract.helpers import ORIGIN, add_job, enqueue, new

pytestmark = pytest.mark.anyio


def _claims(ids: list[int], job_id: int, *, attempt: int = 1, now: float = 3.0) -> ClaimRuns:
    return ClaimRuns(
        [
            ClaimRun(dispatch_id=d, attempt=attempt, idempotency_key=f"L{d}", job_id=job_id)
            for d in ids
        ],
        ORIGIN,
        now,
    )


async def test_a_batch_of_claims_answers_each_claim(store: Store) -> None:
    a = await add_job(store, "a")
    ids = [d for d, _ in await enqueue(store, *[new(a) for _ in range(5)])]
    running = ClaimRun(dispatch_id=ids[4], attempt=1, idempotency_key="other", job_id=a)
    [taken] = await store.apply_one(ClaimRuns([running], ORIGIN, 3.0))  # not queued any more
    assert taken
    # another dispatch holds the key of ids[3]: the claim answers 0, it is skipped
    [(held, _)] = await enqueue(store, new(a))
    assert await store.apply_one(
        ClaimRuns(
            [ClaimRun(dispatch_id=held, attempt=1, idempotency_key=f"L{ids[3]}", job_id=a)],
            ORIGIN,
            3.0,
        )
    )
    order = [ids[2], ids[0], ids[4], ids[3], ids[1]]
    got = await store.apply_one(_claims(order, a))
    assert got[2] is None and got[3] == 0
    won = [got[0], got[1], got[4]]
    assert all(won) and won == sorted(won) and min(won) > taken  # type: ignore[type-var]
    for d, run_id in zip(order, got, strict=True):
        disp = await store.dispatch(d)
        assert disp is not None
        if run_id:
            assert disp.status == "running" and disp.attempt == 1
            run = await store.run(run_id)
            assert run is not None and (run.status, run.dispatch_id) == ("running", d)
    skipped = await store.dispatch(ids[3])
    assert skipped is not None and (skipped.status, skipped.outcome) == ("done", "skipped")


async def test_a_batch_of_outcomes_answers_each_outcome(store: Store) -> None:
    a = await add_job(store, "a")
    ids = [d for d, _ in await enqueue(store, *[new(a) for _ in range(5)])]
    runs = await store.apply_one(_claims(ids, a))
    stale = runs[4]
    [first] = await store.apply_one(
        FinishRuns([FinishRun(run_id=stale, dispatch_id=ids[4], outcome="ok", next="done")], 4.0)
    )
    assert first == 0
    finals = [
        FinishRun(run_id=runs[0], dispatch_id=ids[0], outcome="ok", next="done", result=b"1"),
        FinishRun(run_id=runs[1], dispatch_id=ids[1], outcome="error", next="retry", error="e"),
        FinishRun(run_id=runs[2], dispatch_id=ids[2], outcome="error", next="dead", error="x"),
        FinishRun(run_id=runs[3], dispatch_id=ids[3], outcome="cancelled", next="cancelled"),
        FinishRun(run_id=stale, dispatch_id=ids[4], outcome="error", next="retry"),
    ]
    done, seq, *rest = await store.apply_one(FinishRuns(finals, 5.0, ORIGIN))
    assert done == 0 and rest == [0, 0, None]
    assert isinstance(seq, int) and seq > 0
    statuses = [(await store.dispatch(d)).status for d in ids]  # type: ignore[union-attr]
    assert statuses == ["done", "queued", "dead", "cancelled", "done"]
    retried = await store.dispatch(ids[1])
    assert retried is not None and retried.seq == seq and retried.last_error == "e"
    assert [(await store.run(r)).status for r in runs[:4]] == [  # type: ignore[union-attr]
        "ok", "error", "error", "cancelled",
    ]  # fmt: skip
    # the failed run's key was released: the retry claims it again
    [again] = await store.apply_one(_claims([ids[1]], a, attempt=2, now=6.0))
    assert again and again > max(runs)


async def test_a_run_named_twice_in_one_op_counts_its_first_outcome(store: Store) -> None:
    a = await add_job(store, "a")
    [(d, _)] = await enqueue(store, new(a))
    [run_id] = await store.apply_one(_claims([d], a))
    twice = [
        FinishRun(run_id=run_id, dispatch_id=d, outcome="ok", next="done"),
        FinishRun(run_id=run_id, dispatch_id=d, outcome="error", next="retry"),
    ]
    assert list(await store.apply_one(FinishRuns(twice, 4.0, ORIGIN))) == [0, None]
    disp = await store.dispatch(d)
    assert disp is not None and disp.status == "done"


async def test_outcomes_all_done_with_one_stale_answer_each_and_keep_the_first(
    store: Store,
) -> None:
    """Every outcome ``done`` (SQLite writes those in one statement per table) with one
    run already finished, and one named twice: each answered as one by one, and the
    finished run's first outcome kept."""
    a = await add_job(store, "a")
    ids = [d for d, _ in await enqueue(store, *[new(a) for _ in range(4)])]
    runs = await store.apply_one(_claims(ids, a))
    early = FinishRun(run_id=runs[1], dispatch_id=ids[1], outcome="ok", next="done", error="1st")
    assert list(await store.apply_one(FinishRuns([early], 4.0, ORIGIN))) == [0]
    finals = [
        FinishRun(run_id=r, dispatch_id=d, outcome="ok", next="done", error="2nd")
        for r, d in zip(runs, ids, strict=True)
    ]
    got = await store.apply_one(FinishRuns(finals, 5.0, ORIGIN))
    assert list(got) == [0, None, 0, 0]
    dispatches = [await store.dispatch(d) for d in ids]
    assert [(d.status, d.last_error) for d in dispatches if d is not None] == [
        ("done", "2nd"), ("done", "1st"), ("done", "2nd"), ("done", "2nd"),
    ]  # fmt: skip
    ended = [await store.run(r) for r in runs]
    assert [r.finished_at for r in ended if r is not None] == [5.0, 4.0, 5.0, 5.0]
    # named twice, both done: the first counts, the second finds it finished
    [(d, _)] = await enqueue(store, new(a))
    [run_id] = await store.apply_one(_claims([d], a, now=6.0))
    twice = [
        FinishRun(run_id=run_id, dispatch_id=d, outcome="ok", next="done", error=e)
        for e in ("a", "b")
    ]
    assert list(await store.apply_one(FinishRuns(twice, 7.0, ORIGIN))) == [0, None]
    again = await store.dispatch(d)
    assert again is not None and again.last_error == "a"


async def test_two_claims_of_one_key_in_one_op_the_first_wins(store: Store) -> None:
    a = await add_job(store, "a")
    ids = [d for d, _ in await enqueue(store, *[new(a) for _ in range(3)])]
    claims = [
        ClaimRun(dispatch_id=d, attempt=1, idempotency_key=k, job_id=a)
        for d, k in zip(ids, ["same", "own", "same"], strict=True)
    ]
    first, own, second = await store.apply_one(ClaimRuns(claims, ORIGIN, 3.0))
    assert first and own and second == 0
    lost = await store.dispatch(ids[2])
    assert lost is not None and (lost.status, lost.outcome) == ("done", "skipped")


async def test_a_pass_commits_its_outcomes_and_next_claims_together(store: Store) -> None:
    a = await add_job(store, "a")
    ids = [d for d, _ in await enqueue(store, *[new(a) for _ in range(4)])]
    runs = await store.apply_one(_claims(ids[:2], a))
    finals = [
        FinishRun(run_id=r, dispatch_id=d, outcome="ok", next="done")
        for r, d in zip(runs, ids[:2], strict=True)
    ]
    bad = MarkMessages([1], "bogus", 4.0)
    done, failed, claimed = await store.apply(
        [FinishRuns(finals, 4.0, ORIGIN), bad, _claims(ids[2:], a, now=4.0)]
    )
    assert list(done) == [0, 0] and isinstance(failed, StoreError) and all(claimed)
    statuses = [(await store.dispatch(d)).status for d in ids]  # type: ignore[union-attr]
    assert statuses == ["done", "done", "running", "running"]


async def test_a_stale_epoch_loses_a_pass_whole_and_the_current_one_wins(pg_url: str) -> None:
    store = await open_store(pg_url, node="n")
    try:
        old = await store.join_node("n", lease=15.0, host="h", pid=1)
        new_epoch = (await store.join_node("n", lease=15.0, host="h", pid=1)).epoch
        assert new_epoch > old.epoch
        a = await add_job(store, "a")
        ids = [d for d, _ in await enqueue(store, *[new(a) for _ in range(3)])]
        runs = await store.apply_one(_claims(ids[:1], a))
        finals = [FinishRun(run_id=runs[0], dispatch_id=ids[0], outcome="ok", next="done")]
        stale = await store.apply(
            [
                FinishRuns(finals, 4.0, "n", epoch=old.epoch),
                ClaimRuns(_claims(ids[1:], a).claims, "n", 4.0, epoch=old.epoch),
            ]
        )
        assert [list(r) for r in stale] == [[None], [None, None]]
        statuses = [(await store.dispatch(d)).status for d in ids]  # type: ignore[union-attr]
        assert statuses == ["running", "queued", "queued"]
        [won] = await store.apply_one(
            ClaimRuns(_claims(ids[1:2], a).claims, "n", 5.0, epoch=new_epoch)
        )
        assert won
    finally:
        await store.close(checkpoint=False)
