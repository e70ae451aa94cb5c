"""FakeClock: time moves only once every task is blocked and no store work is in flight."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator

import anyio
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.store.activity import THREAD_WORK
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store  # tests/conftest.py


@pytest.fixture
def gate(store: SqliteStore) -> Iterator[threading.Event]:
    """Holds a store call on its thread until set (set on teardown, before the close)."""
    event = threading.Event()
    yield event
    event.set()


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0])


def _gated(gate: threading.Event) -> Callable[[sqlite3.Connection], int]:
    def fn(conn: sqlite3.Connection) -> int:
        assert gate.wait(30), "gate never opened"
        return _count(conn)

    return fn


async def _arm_after_round_trips(
    store: SqliteStore, clock: FakeClock, trips: int, fired: anyio.Event
) -> None:
    """An actor that arms its timer only after some store round trips."""
    for _ in range(trips):
        await store.read(_count)
    await clock.sleep_until(clock.now() + 5.0)
    fired.set()


async def test_advance_when_blocked_waits_for_the_timer_armed_after_store_work(
    store: SqliteStore,
) -> None:
    clock = FakeClock()
    fired = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_arm_after_round_trips, store, clock, 20, fired)
        await clock.advance_when_blocked(5.0)
        assert fired.is_set(), "the advance was lost: the timer was armed after it"
        assert clock.next_deadline() is None


async def test_bare_advance_after_wait_all_tasks_blocked_loses_the_wakeup(
    store: SqliteStore,
    gate: threading.Event,
) -> None:
    # why the waiting forms exist: a task awaiting the store's thread looks blocked
    clock = FakeClock()
    fired = anyio.Event()

    async def actor() -> None:
        await store.read(_gated(gate))
        await clock.sleep_until(clock.now() + 5.0)
        fired.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(actor)
        await anyio.wait_all_tasks_blocked()  # returns: the actor "waits" on a future
        assert THREAD_WORK.busy()
        clock.advance(5.0)  # too early: nothing is armed yet
        gate.set()
        await clock.wait_idle()
        assert not fired.is_set()
        assert clock.next_deadline() == clock.now() + 5.0  # armed from the moved time
        await clock.advance_when_blocked(5.0)
        assert fired.is_set()


async def test_wait_idle_does_not_return_while_store_work_runs(
    store: SqliteStore, gate: threading.Event
) -> None:
    clock = FakeClock()
    fired = anyio.Event()

    async def actor() -> None:
        await store.read(_gated(gate))
        await clock.sleep_until(clock.now() + 1.0)
        fired.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(actor)
        with pytest.raises(TimeoutError, match="store work in flight"):
            await clock.wait_idle(timeout=0.3)
        gate.set()
        await clock.advance_when_blocked(1.0)
        assert fired.is_set()


async def test_a_cancelled_store_call_counts_until_its_thread_is_done(
    store: SqliteStore,
    gate: threading.Event,
) -> None:
    clock = FakeClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.read, _gated(gate))
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()  # the read's task goes, its thread still works
    assert THREAD_WORK.in_flight == 0
    assert THREAD_WORK.busy()
    with pytest.raises(TimeoutError, match="store work in flight"):
        await clock.wait_idle(timeout=0.3)
    gate.set()
    await clock.wait_idle()
    assert not THREAD_WORK.busy()


async def test_autojump_steps_to_each_deadline_in_turn(store: SqliteStore) -> None:
    clock = FakeClock()
    start = clock.now()
    seen: list[float] = []

    async def actor() -> None:
        await clock.sleep_until(clock.now() + 10.0)
        seen.append(clock.now())
        await store.read(_count)
        with anyio.CancelScope() as scope:
            clock.cancel_at(scope, clock.now() + 5.0)
            await anyio.sleep_forever()
        seen.append(clock.now())
        await store.read(_count)
        await clock.sleep_until(clock.now() + 0.5)
        seen.append(clock.now())

    async with clock.autojump():
        await actor()
    assert seen == [start + 10.0, start + 15.0, start + 15.5]


async def test_autojump_does_not_move_time_while_store_work_runs(
    store: SqliteStore, gate: threading.Event
) -> None:
    clock = FakeClock()
    start = clock.now()
    outcome: list[bool] = []

    async def actor() -> None:
        with anyio.CancelScope() as scope:
            clock.cancel_at(scope, clock.now() + 1.0)  # a timeout around store work
            await store.read(_gated(gate))
        outcome.append(scope.cancelled_caught)

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(actor)
        with pytest.raises(TimeoutError):
            await clock.wait_idle(timeout=0.3)  # beside the autojump task: no livelock
        assert clock.now() == start
        gate.set()
    assert outcome == [False]
    assert clock.now() == start  # the scope exited: its deadline is forgotten


async def test_wait_idle_beside_autojump_returns(store: SqliteStore) -> None:
    clock = FakeClock()
    async with clock.autojump():
        await store.read(_count)
        await clock.wait_idle(timeout=5.0)
        await clock.sleep_until(clock.now() + 3.0)


async def test_wait_idle_names_a_task_that_never_blocks() -> None:
    clock = FakeClock()

    async def spinner() -> None:
        while True:
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(spinner, name="spinner")
        with pytest.raises(TimeoutError, match="spinner"):
            await clock.wait_idle(timeout=0.2)
        tg.cancel_scope.cancel()


async def test_cancel_at_deadline_fires_only_when_blocked(store: SqliteStore) -> None:
    clock = FakeClock()
    caught: list[bool] = []

    async def actor() -> None:
        await store.read(_count)
        with anyio.CancelScope() as scope:
            clock.cancel_at(scope, clock.now() + 2.0)
            await anyio.sleep_forever()
        caught.append(scope.cancelled_caught)

    async with anyio.create_task_group() as tg:
        tg.start_soon(actor)
        await clock.advance_when_blocked(1.999)
        assert caught == []
        await clock.advance_when_blocked(0.001)
        assert caught == [True]
