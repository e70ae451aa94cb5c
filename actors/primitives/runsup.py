"""The run supervisor: a dynamic supervisor of temporary children (one per run attempt).

Role: start run actors on demand under a cap, cancel one on request, and on shutdown
wait for the running ones up to a grace period before cancelling the rest.

Each run actor is one coroutine with its own cancel scope, deadline and outcome. It is
executed by a pool of reusable worker tasks (at most ``max_children``, created on
demand) rather than a fresh task per run: spawning an anyio task costs ~40 µs on this
kind of machine, which would be most of the cost of a no-op run.
Inbox: none; its owner (the dispatcher) calls ``start_child`` / ``cancel`` directly,
which is going down the tree. Sends: ``on_crash(key, exc)`` if a child dies without
reporting its own outcome. Restart type of children: temporary (never restarted;
retries are data the dispatcher decides on, not restarts).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from shepherd.actors.primitives.clock import Clock

__all__ = ["ChildHandle", "RunSupervisor"]

log = logging.getLogger("shepherd.runs")


class ChildHandle:
    """Shared between the supervisor and one run actor: where to cancel, and why."""

    __slots__ = ("cancel_reason", "key", "new_scope", "scope")

    def __init__(
        self, key: int, new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
    ) -> None:
        self.key = key
        self.new_scope = new_scope  # the run's own scope is made with it (the loop's class)
        self.scope: anyio.CancelScope | None = None
        self.cancel_reason: str | None = None

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self.scope is not None:
            self.scope.cancel()


class RunSupervisor:
    def __init__(
        self,
        name: str,
        *,
        max_children: int,
        clock: Clock,
        on_crash: Callable[[int, BaseException], None],
    ) -> None:
        if max_children < 1:
            raise ValueError("max_children must be >= 1")
        self.name = name
        self.max_children = max_children
        self._clock = clock
        self._on_crash = on_crash
        self._children: dict[int, ChildHandle] = {}
        self._tg: TaskGroup | None = None
        # runs waiting for a worker, and the wake-up events of idle workers
        self._work: deque[tuple[ChildHandle, Callable[[ChildHandle], Awaitable[None]]]] = deque()
        self._sleeping: deque[anyio.Event] = deque()
        self._workers = 0
        self._waking = 0  # workers woken (or started) that have not yet taken a run
        self._admitting = True
        self._idle = anyio.Event()
        self._idle.set()
        self._new_event: Callable[[], anyio.Event] = anyio.Event
        self._new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
        self.started_total = 0
        self.crashed_total = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # the event loop's own ``Event`` and ``CancelScope`` classes: anyio looks the
        # backend up on every ``anyio.Event()`` / ``anyio.CancelScope()``, and a worker
        # makes an event each time it sleeps, a run a scope
        self._new_event = type(anyio.Event())
        self._new_scope = type(anyio.CancelScope())
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    async def _worker(self) -> None:
        # Takes runs back to back while there are any (no yield between them, so a burst
        # of short runs reports to the dispatcher as one batch), then sleeps until woken.
        # One worker at a time is woken for the runs waiting: each, as it takes a run,
        # wakes the next if more are waiting and none is on its way, so a run that
        # waits hands the rest on, and a burst of runs that do not wait costs one wake.
        self._waking -= 1  # started as a woken worker
        while True:
            while self._work:
                handle, fn = self._work.popleft()
                if self._work and not self._waking:
                    self._wake_one()
                await self._child_main(handle, fn)
            wake = self._new_event()
            self._sleeping.append(wake)
            await wake.wait()
            self._waking -= 1

    def _wake_one(self) -> None:
        """Wake a sleeping worker, or start one while under the cap."""
        if self._sleeping:
            self._waking += 1
            self._sleeping.popleft().set()
        elif self._workers < self.max_children and self._tg is not None:
            self._waking += 1
            self._workers += 1
            self._tg.start_soon(self._worker, name=f"{self.name}-worker-{self._workers}")

    @property
    def free(self) -> int:
        return self.max_children - len(self._children) if self._admitting else 0

    def start_child(self, key: int, fn: Callable[[ChildHandle], Awaitable[None]]) -> ChildHandle:
        if self._tg is None or not self._admitting:
            raise RuntimeError(f"{self.name} is not admitting runs")
        if len(self._children) >= self.max_children:
            raise RuntimeError(f"{self.name} is at its cap of {self.max_children} runs")
        handle = ChildHandle(key, self._new_scope)
        self._children[key] = handle
        self._idle = self._new_event() if self._idle.is_set() else self._idle
        self.started_total += 1
        self._work.append((handle, fn))
        if not self._waking:
            self._wake_one()
        return handle

    async def _child_main(
        self, handle: ChildHandle, fn: Callable[[ChildHandle], Awaitable[None]]
    ) -> None:
        # One of the two places that catch broadly: the run actor reports its own
        # outcome; this only covers a run actor that died before it could.
        try:
            await fn(handle)
        except Exception as exc:
            self.crashed_total += 1
            log.error("run actor %s died: %s: %s", handle.key, type(exc).__name__, exc)
            self._on_crash(handle.key, exc)
        finally:
            self._children.pop(handle.key, None)
            if not self._children:
                self._idle.set()

    def cancel(self, key: int, reason: str) -> bool:
        handle = self._children.get(key)
        if handle is None:
            return False
        handle.cancel(reason)
        return True

    def stop_admitting(self) -> None:
        self._admitting = False

    async def drain(self, grace: float) -> int:
        """Stop admitting, wait up to ``grace`` s for runs, cancel the rest; returns cancelled."""
        self._admitting = False
        with anyio.CancelScope() as scope:
            self._clock.cancel_at(scope, self._clock.now() + grace)
            await self._idle.wait()
        left = list(self._children.values())
        for handle in left:
            handle.cancel("shutdown")
        with anyio.CancelScope(shield=True):
            await self._idle.wait()
        return len(left)

    def statistics(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "running": len(self._children),
            "max_children": self.max_children,
            "started_total": self.started_total,
            "workers": self._workers,
            "crashed_total": self.crashed_total,
            "admitting": self._admitting,
        }

    def __repr__(self) -> str:
        return f"<RunSupervisor {self.name} {len(self._children)}/{self.max_children}>"
