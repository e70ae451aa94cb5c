"""Injected time. Nothing in ``actors/`` reads the system clock or sleeps directly.

``now()`` is monotonic seconds (the event loop's clock for ``RealClock``), used for
deadlines, timers and restart windows. ``wall()`` is epoch seconds, used for
everything stored. ``FakeClock`` lets tests move both forward by hand; sleepers and
deadline-bound cancel scopes wake exactly when it passes their time.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio

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

    ``advance`` wakes every sleeper and cancels every scope whose deadline has passed;
    follow it with ``await anyio.wait_all_tasks_blocked()`` (or a ``wait_*`` helper) to
    let the woken tasks run.
    """

    def __init__(self, *, wall: float = 1_700_000_000.0, mono: float = 1000.0) -> None:
        self._mono = mono
        self._wall_offset = wall - mono
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._scopes: list[tuple[float, int, anyio.CancelScope]] = []
        self._deadlines: dict[anyio.CancelScope, float] = {}

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
        heapq.heappush(self._sleepers, (deadline, next(self._seq), event))
        await event.wait()

    def cancel_at(self, scope: anyio.CancelScope, deadline: float) -> None:
        if deadline <= self._mono:
            self._deadlines.pop(scope, None)
            scope.cancel()
        else:
            self._deadlines[scope] = deadline
            heapq.heappush(self._scopes, (deadline, next(self._seq), scope))

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
        """The earliest pending sleeper or scope deadline (tests step to it)."""
        times = [self._sleepers[0][0]] if self._sleepers else []
        times += [d for d in self._deadlines.values()]
        return min(times) if times else None

    def __repr__(self) -> str:
        return f"<FakeClock now={self._mono:.3f} wall={self.wall():.3f}>"
