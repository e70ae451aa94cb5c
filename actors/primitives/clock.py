"""Injected time. Nothing in ``actors/`` reads the system clock or sleeps directly.

``now()`` is monotonic seconds (the event loop's clock for ``RealClock``), used for
deadlines, timers and restart windows. ``wall()`` is epoch seconds, used for
everything stored. ``FakeClock`` lets tests move both forward by hand; sleepers and
deadline-bound cancel scopes wake exactly when it passes their time. It moves time only
when told, and ``wait_idle`` / ``advance_when_blocked`` / ``autojump`` make "when every
task is blocked and no store work is in flight" the moment it moves.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import anyio

from shepherd.store.activity import THREAD_WORK

__all__ = ["Clock", "FakeClock", "RealClock"]


class Clock(Protocol):
    def now(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...

    def cancel_at(self, scope: anyio.CancelScope, deadline: float) -> None:
        """Arrange for ``scope`` to be cancelled once ``now() >= deadline``.

        Calling it again for the same scope replaces the deadline (it may move later,
        which is how an idle timeout is pushed back by a heartbeat).
        """
        ...

    def mono_for_wall(self, wall: float) -> float:
        """The monotonic instant at which ``wall()`` will read ``wall``."""
        ...


class RealClock:
    """Loop time for deadlines, ``time.time()`` for stored timestamps."""

    def now(self) -> float:
        # The loop's clock is CLOCK_MONOTONIC on asyncio and uvloop alike (uvloop's is
        # cached per iteration, ms resolution); reading it directly saves anyio's
        # backend lookup, ~9 µs per call on the hot path.
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)

    def cancel_at(self, scope: anyio.CancelScope, deadline: float) -> None:
        scope.deadline = deadline

    def mono_for_wall(self, wall: float) -> float:
        return self.now() + (wall - self.wall())

    def __repr__(self) -> str:
        return "<RealClock>"


class FakeClock:
    """A clock tests drive by hand: ``advance(seconds)`` and ``jump_wall(seconds)``.

    ``advance`` wakes every sleeper and cancels every scope whose deadline has passed,
    at once, whatever the woken code is doing. Tests move time with the waiting forms:

    - ``await clock.wait_idle()``: return once every other task is blocked and no store
      call is running on a connection's thread (``store.activity.THREAD_WORK``);
    - ``await clock.advance_when_blocked(seconds)`` (and ``set_wall_when_blocked``):
      ``wait_idle``, advance, ``wait_idle`` -- an actor that arms its timer after a store
      round trip has armed it before time moves, and has reacted before the call returns;
    - ``async with clock.autojump():``: while the block runs, whenever everything is idle,
      jump to the next pending deadline (trio's ``MockClock(autojump_threshold=0)``).

    "Blocked" includes waiting on a subprocess, a socket or a real timer: a test that
    needs such work done first waits for it explicitly (``tests.helpers.eventually``).
    The waiting forms need the asyncio backend (they inspect its tasks and ready queue).
    """

    def __init__(self, *, wall: float = 1_700_000_000.0, mono: float = 1000.0) -> None:
        self._mono = mono
        self._wall_offset = wall - mono
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._waiting: dict[int, float] = {}  # live sleepers: seq -> deadline
        self._scopes: list[tuple[float, int, anyio.CancelScope]] = []
        self._deadlines: dict[anyio.CancelScope, float] = {}
        self._armed: anyio.Event | None = None  # set when a deadline is added (autojump)

    def now(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._mono + self._wall_offset

    def mono_for_wall(self, wall: float) -> float:
        return wall - self._wall_offset

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._mono:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        seq = next(self._seq)
        heapq.heappush(self._sleepers, (deadline, seq, event))
        self._waiting[seq] = deadline
        self._note_armed()
        try:
            await event.wait()
        finally:
            self._waiting.pop(seq, None)

    def cancel_at(self, scope: anyio.CancelScope, deadline: float) -> None:
        if deadline <= self._mono:
            self._deadlines.pop(scope, None)
            scope.cancel()
        else:
            self._deadlines[scope] = deadline
            heapq.heappush(self._scopes, (deadline, next(self._seq), scope))
            self._note_armed()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a fake clock only moves forward; use jump_wall for wall steps")
        self._mono += seconds
        self._fire()

    def set_wall(self, wall: float) -> None:
        """Advance both clocks so that ``wall()`` reads ``wall`` (must not go back)."""
        self.advance(wall - self.wall())

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock alone (an NTP step, a suspended laptop); monotonic stays."""
        self._wall_offset += seconds

    def _fire(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            heapq.heappop(self._sleepers)[2].set()
        while self._scopes and self._scopes[0][0] <= self._mono:
            deadline, _, scope = heapq.heappop(self._scopes)
            if self._deadlines.get(scope) == deadline:  # not moved since
                del self._deadlines[scope]
                scope.cancel()

    def next_deadline(self) -> float | None:
        """The earliest deadline of a live sleeper or of a scope still open (tests step
        to it); a scope that has exited or was cancelled meanwhile is forgotten."""
        for scope in [s for s in self._deadlines if _finished(s)]:
            del self._deadlines[scope]
        times = itertools.chain(self._waiting.values(), self._deadlines.values())
        return min(times, default=None)

    # -- moving time only when everything waits -------------------------------------------

    async def wait_idle(self, *, timeout: float = 30.0) -> None:
        """Return once every other task is blocked and no store work is in flight.

        Checked twice in a row, one loop iteration apart, so callbacks already scheduled
        have run. Tasks inside ``wait_idle`` (an autojump task) do not count. ``timeout``
        is real seconds; past it, ``TimeoutError`` names the tasks that kept running.
        """
        me = asyncio.current_task()
        assert me is not None
        _IDLERS.add(me)
        reason = ""
        try:
            with anyio.fail_after(timeout):
                quiet = 0
                while quiet < 2:
                    await anyio.lowlevel.checkpoint()
                    if running := _runnable():
                        # a due timer (the idler's own sleep or deadline among them)
                        # does not hide what held the clock before it
                        timers = all(r.startswith("<TimerHandle") for r in running)
                        quiet, reason = 0, reason if timers and reason else ", ".join(running)
                    elif THREAD_WORK.busy():
                        quiet, reason = 0, "store work in flight"
                        await _thread_work_done()
                    else:
                        quiet += 1
        except TimeoutError:
            raise TimeoutError(
                f"fake clock: not idle after {timeout}s real time ({reason})"
            ) from None
        finally:
            _IDLERS.discard(me)

    async def advance_when_blocked(self, seconds: float) -> None:
        """``wait_idle``, ``advance(seconds)``, then ``wait_idle`` for the woken tasks."""
        await self.wait_idle()
        self.advance(seconds)
        await self.wait_idle()

    async def set_wall_when_blocked(self, wall: float) -> None:
        """``set_wall`` between two ``wait_idle`` calls (see ``advance_when_blocked``)."""
        await self.wait_idle()
        self.set_wall(wall)
        await self.wait_idle()

    @asynccontextmanager
    async def autojump(self) -> AsyncIterator[None]:
        """While the block runs, jump to the next deadline whenever everything is idle."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._jump_forever, name="fake-clock-autojump")
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    async def _jump_forever(self) -> None:
        while True:
            await self.wait_idle(timeout=math.inf)
            deadline = self.next_deadline()
            if deadline is None:
                self._armed = anyio.Event()
                await self._armed.wait()
                continue
            self.advance(max(0.0, deadline - self._mono))

    def _note_armed(self) -> None:
        if self._armed is not None:
            self._armed.set()
            self._armed = None

    def __repr__(self) -> str:
        return f"<FakeClock now={self._mono:.3f} wall={self.wall():.3f}>"


# tasks inside FakeClock.wait_idle: they wait for the others, they do not count as busy
_IDLERS: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()


def _runnable() -> list[str]:
    """Names of what can run now: a task not waiting on a future (or whose future is
    done), or a callback already in the loop's ready queue that is not an idler's."""
    busy = []
    for task in asyncio.all_tasks():
        if task in _IDLERS:
            continue
        waiter = task._fut_waiter  # type: ignore[attr-defined]
        if waiter is None or waiter.done():
            busy.append(task.get_name())
    if busy:
        return busy
    for handle in getattr(asyncio.get_running_loop(), "_ready", ()):
        owner = getattr(handle._callback, "__self__", None)
        if (isinstance(owner, asyncio.Task) and owner in _IDLERS) or handle.cancelled():
            continue
        return [repr(handle)]
    return []


async def _thread_work_done() -> None:
    if THREAD_WORK.in_flight:
        done = anyio.Event()
        forget = THREAD_WORK.when_idle(done.set)
        try:
            await done.wait()
        finally:
            forget()
    else:  # a hop whose task was cancelled: its thread marks it done, no loop callback
        await anyio.sleep(0.001)


def _finished(scope: anyio.CancelScope) -> bool:
    if scope.cancel_called:
        return True
    # entered and exited (anyio's own state; a scope not yet entered is still pending)
    return getattr(scope, "_host_task", None) is not None and not getattr(scope, "_active", True)
