"""Store work in flight on a connection's worker thread.

A task awaiting the store looks blocked to the event loop while the connection's thread
still works for it. A test clock that moves time only once every task is blocked
(``actors.primitives.clock.FakeClock.wait_idle``) also waits until ``THREAD_WORK.busy()`` is false.
The cost on the hot path is two counter updates per thread hop. Counted: every hop of
the SQLite engine's ``store.sqlite.batch.on_thread`` (``apply``, every read, the
writer's setup, ``checkpoint``, ``backup``), and a fork server's spawn request until its
answer (``actors/executors/forker.py``: another process works for the task).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["THREAD_WORK", "ThreadWork"]


class ThreadWork:
    """Counts thread hops whose work has not finished.

    ``in_flight`` is touched on the event loop's thread only. A hop whose awaiting task
    is cancelled goes on running on its thread; it stays counted (``abandon``) until a
    marker queued behind it on the same thread has run, or that thread has ended.
    """

    __slots__ = ("_abandoned", "_idle", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        self._abandoned: list[tuple[threading.Thread | None, list[bool]]] = []
        self._idle: list[Callable[[], object]] = []

    def begin(self) -> None:
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1
        if not self.in_flight and self._idle:
            callbacks, self._idle = self._idle, []
            for callback in callbacks:
                callback()

    def abandon(self, thread: threading.Thread | None) -> Callable[[], Any]:
        """The hop's task was cancelled: returns the marker to run on its thread next."""
        done: list[bool] = []
        self._abandoned.append((thread, done))
        self.end()
        return lambda: done.append(True)  # list.append is atomic across threads

    def busy(self) -> bool:
        if self._abandoned:
            self._abandoned = [
                (t, d) for t, d in self._abandoned if not d and (t is None or t.is_alive())
            ]
        return self.in_flight > 0 or bool(self._abandoned)

    def when_idle(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback`` once ``in_flight`` drops to zero; returns a canceller."""
        self._idle.append(callback)

        def cancel() -> None:
            if callback in self._idle:
                self._idle.remove(callback)

        return cancel


THREAD_WORK = ThreadWork()
