"""The lease board alone, on the fake clock: who may claim, fencing, waiting claims."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from shepherd.actors.executors.leases import (
    Lease,
    LeaseBoard,
    NotHolder,
    StaleLease,
    UnknownLease,
    can_claim,
)
from shepherd.actors.primitives.clock import FakeClock

pytestmark = pytest.mark.anyio


def lease(run_id: int = 1, *, needs: tuple[str, ...] = (), agent: str | None = None) -> Lease:
    return Lease(
        run_id=run_id, dispatch_id=run_id * 10, job="j", payload={}, attempt=1,
        needs=needs, agent=agent, idle=5.0, hard=1000.0 + 300.0,
    )  # fmt: skip


def test_who_may_claim() -> None:
    assert can_claim(lease(), "anyone", None)
    assert can_claim(lease(needs=("gpu",)), "w", frozenset({"gpu", "cpu"}))
    assert not can_claim(lease(needs=("gpu",)), "w", frozenset({"cpu"}))
    assert not can_claim(lease(needs=("gpu",)), "w", None)  # it did not say
    assert can_claim(lease(needs=("gpu",)), "w", frozenset({"*"}))
    pinned = lease(needs=("gpu",), agent="a2")
    assert can_claim(pinned, "a2", None)  # assignment vouched for its capabilities
    assert not can_claim(pinned, "a1", frozenset({"gpu"}))


def test_fencing() -> None:
    clock = FakeClock()
    board = LeaseBoard(clock)
    events: list[dict[str, Any]] = []
    board.listeners.append(lambda kind, data: events.append(data))
    one = lease()
    board.offer(one)
    assert board.claim_nowait("a1", None) is one
    assert board.claim_nowait("a1", None) is None  # taken
    assert board.check(1, one.token, "a1", "heartbeat") is one
    with pytest.raises(NotHolder):
        board.check(1, one.token, "a2", "heartbeat")
    with pytest.raises(StaleLease):
        board.check(1, "1." + "0" * 32, "a1", "complete")
    with pytest.raises(UnknownLease):
        board.check(2, "2." + "0" * 32, "a1", "complete")
    clock.advance(4.0)
    board.renew(one)
    clock.advance(4.0)  # renewed at +4: the deadline is +9
    assert board.check(1, one.token, "a1", "progress") is one
    clock.advance(1.5)
    with pytest.raises(StaleLease, match="expired"):
        board.check(1, one.token, "a1", "complete")
    board.withdraw(one)
    with pytest.raises(StaleLease, match="ended"):
        board.check(1, one.token, "a1", "complete")
    assert board.counts["stale"] == 3 and board.counts["expired"] == 1
    assert [e["event"] for e in events] == ["claimed", "stale", "stale", "expired", "stale"]
    # a stale report is noted on the dispatch's current lease
    retry = Lease(
        run_id=2, dispatch_id=10, job="j", payload={}, attempt=2, needs=(), agent=None,
        idle=5.0, hard=clock.now() + 300,
    )  # fmt: skip
    board.offer(retry)
    with pytest.raises(StaleLease):
        board.check(1, one.token, "a1", "complete")
    assert retry.stale[0]["run_id"] == 1 and retry.details()["stale_reports"]


async def test_a_waiting_claim_gets_the_offer_and_close_ends_waits() -> None:
    clock = FakeClock()
    board = LeaseBoard(clock)
    got: list[Lease | None] = []

    async def wait(caps: frozenset[str] | None) -> None:
        got.append(await board.claim("w", caps, 60.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, frozenset({"gpu"}))
        tg.start_soon(wait, None)
        await anyio.wait_all_tasks_blocked()
        assert board.statistics()["waiting"] == 2
        gpu = lease(1, needs=("gpu",))
        board.offer(gpu)  # only the first waiter may take it
        await anyio.wait_all_tasks_blocked()
        assert got == [gpu] and gpu.holder == "w"
        board.close()
    assert got == [gpu, None]
    assert board.claim_nowait("w", None) is None  # closing: nothing more


def test_a_second_report_before_the_run_ends_is_stale() -> None:
    board = LeaseBoard(FakeClock())
    one = lease()
    board.offer(one)
    assert board.claim_nowait("a1", None) is one
    board.complete(board.check(1, one.token, "a1", "complete"), {"n": 1})
    with pytest.raises(StaleLease, match="already reported"):
        board.check(1, one.token, "a1", "fail")
    with pytest.raises(StaleLease, match="already reported"):
        board.adopt(10, "a1")
    assert one.outcome is not None and one.outcome.result == {"n": 1}
    board.withdraw(one)
    with pytest.raises(StaleLease, match="reported on"):
        board.check(1, one.token, "a1", "complete")
