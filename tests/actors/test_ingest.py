"""The ingest actor: wake-up datagrams become Pokes, merged, and one catch-up Poke
right after the socket is bound."""

from __future__ import annotations

import anyio
import pytest

from shepherd.actors.ingest import CATCH_UP, Ingest, merge_wakes, send_wake
from shepherd.actors.messages import DispatcherMsg, Poke, SchedulerMsg
from shepherd.actors.primitives.mailbox import Mailbox

pytestmark = pytest.mark.anyio


def test_merge_wakes_is_the_union_of_flags() -> None:
    assert merge_wakes([b"d"]) == Poke(dispatches=True)
    assert merge_wakes([b"d", b"d", b"j", b"d", b"jc"]) == Poke(
        dispatches=True, jobs=True, cancels=True
    )
    assert merge_wakes([b"djc", b"ag", b"Ap"]) == CATCH_UP
    assert merge_wakes([b"a"]) == Poke(approvals=True)
    assert merge_wakes([b"d", b"-"]) == Poke(dispatches=True)
    assert merge_wakes([b"-"]) == Poke()  # only wakes


async def _next_poke(mb: Mailbox[DispatcherMsg] | Mailbox[SchedulerMsg]) -> Poke:
    with anyio.fail_after(5):
        msg = await mb.receive()
    assert isinstance(msg, Poke), msg
    return msg


async def test_one_catch_up_poke_after_the_bind_then_waiting_datagrams_merge(
    db_path: str,
) -> None:
    dispatcher: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 1000)
    scheduler: Mailbox[SchedulerMsg] = Mailbox("scheduler", 1000)
    ingest = Ingest(db_path, dispatcher.address(), scheduler.address())
    async with anyio.create_task_group() as tg:
        await tg.start(ingest.run)
        # what was committed before the bind had nobody to wake: read everything once
        assert await _next_poke(dispatcher) == CATCH_UP
        assert (await _next_poke(scheduler)).jobs

        # wake-ups already waiting when the actor next runs: one Poke, all the flags
        # (8: Linux queues only net.unix.max_dgram_qlen datagrams, 10 by default)
        for i in range(8):
            assert send_wake(db_path, "j" if i == 3 else "d")
        assert await _next_poke(dispatcher) == Poke(dispatches=True, jobs=True)
        assert await _next_poke(scheduler) == Poke(dispatches=True, jobs=True)
        await anyio.wait_all_tasks_blocked()
        assert dispatcher.depth == 0 and scheduler.depth == 0
        assert ingest.statistics()["wakes"] == 8
        assert ingest.statistics()["pokes"] == 2

        # only new dispatches: the scheduler is left alone
        assert send_wake(db_path, "d")
        assert await _next_poke(dispatcher) == Poke(dispatches=True)
        await anyio.wait_all_tasks_blocked()
        assert scheduler.depth == 0
        # a cancel or an approval decision may end a fired one-shot: the scheduler hears it
        assert send_wake(db_path, "c")
        assert await _next_poke(dispatcher) == Poke(cancels=True)
        assert await _next_poke(scheduler) == Poke(cancels=True)
        tg.cancel_scope.cancel()
    assert not send_wake(db_path), "the socket is removed when the actor stops"
