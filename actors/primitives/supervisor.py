"""OTP-style supervisor for long-lived actors.

Role: start children in order, watch them, restart them by their restart type and the
strategy, and give up (escalate) when they crash too often.
Inbox: an internal stream of child exits; ``request_stop()`` from the owner.
Sends: ``ActorEvent`` to the injected sink (started / exited / restarted / escalated).
Restart type: whatever its own parent says. Timers: shutdown grace per child.

Semantics (Erlang/OTP ``supervisor``):
- restart types: ``permanent`` (always restarted), ``transient`` (restarted only after a
  crash), ``temporary`` (never restarted);
- strategies: ``one_for_one`` (restart the child alone), ``rest_for_one`` (stop the
  children started after it, last-first, then restart it and them in order),
  ``one_for_all`` (stop all others, restart all in order);
- intensity: at most ``intensity`` restarts in ``period`` seconds of monotonic time; one
  more stops every child in reverse start order and raises ``SupervisorEscalation``;
- exit reasons are a closed set: ``normal``, ``shutdown``, ``crash``; only a crash is
  logged at error level and counted against the intensity.

A child's ``start`` is ``async def run(*, task_status)``; it calls
``task_status.started()`` once it is ready. Stopping a child calls its spec's ``stop``
(if any, e.g. close its mailbox), waits up to ``shutdown`` seconds, then cancels it.

Exits reach the watching loop through a bounded stream (``EXIT_BUFFER``). An exit is
never dropped: when the stream is full (a crash storm while the loop is busy
restarting), the exiting child's wrapper task waits for room (back-pressure), and each
such wait is counted (``statistics()["exits_waited"]``) and logged as a warning.

The module is long because the strategies, the per-child wrapper and the stop protocol
share one piece of state (the children and their generations); split apart, each part
would reach into the others'.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from shepherd.actors.primitives.clock import Clock, RealClock
from shepherd.store.errors import (
    ConfigError,
    DatabaseCorrupt,
    DatabaseReplaced,
    StoreError,
    SupervisorEscalation,
)

__all__ = [
    "EXIT_BUFFER",
    "HASTY_STOP",
    "HOPELESS",
    "ActorEvent",
    "ChildSpec",
    "Supervisor",
    "add_restart",
]

log = logging.getLogger("shepherd.supervisor")

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "rest_for_one", "one_for_all"]
ExitReason = Literal["normal", "shutdown", "crash"]

EXIT_BUFFER = 1000  # exits waiting for the loop; past it an exiting child waits for room
# the crashes after which nothing can be committed again in this process (the file was
# replaced or damaged under it): escalated, the tree stops without waiting out the
# children's shutdown grace (runs whose outcomes cannot be stored; the next start's
# recovery gives them their delivery guarantee), each child at most ``HASTY_STOP`` s
HOPELESS: tuple[type[BaseException], ...] = (DatabaseReplaced, DatabaseCorrupt)
HASTY_STOP = 1.0


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    start: Callable[..., Awaitable[None]]
    restart: Restart = "permanent"
    shutdown: float = 5.0
    stop: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a child needs a name", field="name")
        if self.restart not in ("permanent", "transient", "temporary"):
            raise ConfigError(f"unknown restart type {self.restart!r}", field="restart")
        if self.shutdown < 0:
            raise ConfigError("shutdown grace must be >= 0", field="shutdown")


class ActorEvent(msgspec.Struct, frozen=True, kw_only=True):
    supervisor: str
    child: str
    kind: Literal["started", "exited", "restarted", "escalated"]
    reason: str | None = None
    error: str | None = None


def add_restart(
    window: tuple[float, ...], now: float, intensity: int, period: float
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at ``now``; return the new window and whether it is exceeded."""
    kept = (*tuple(t for t in window if now - t < period), now)
    return kept, len(kept) > intensity


class _Exit(msgspec.Struct, frozen=True):
    index: int
    generation: int
    reason: ExitReason
    error: BaseException | None


class _Child:
    __slots__ = ("done", "generation", "running", "scope", "spec", "starts")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.generation = 0
        self.starts = 0
        self.running = False
        self.scope: anyio.CancelScope | None = None
        self.done = anyio.Event()


class Supervisor:
    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = "one_for_one",
        intensity: int = 3,
        period: float = 5.0,
        clock: Clock | None = None,
        on_event: Callable[[ActorEvent], None] | None = None,
    ) -> None:
        if strategy not in ("one_for_one", "rest_for_one", "one_for_all"):
            raise ConfigError(f"unknown strategy {strategy!r}", field="strategy")
        if intensity < 0:
            raise ConfigError("intensity must be >= 0", field="intensity")
        if period <= 0:
            raise ConfigError("period must be > 0", field="period")
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ConfigError("child names must be unique", field="children")
        self.name = name
        self.strategy = strategy
        self.intensity = intensity
        self.period = period
        self._clock: Clock = clock or RealClock()
        self._on_event = on_event
        self._children = [_Child(c) for c in children]
        self._window: tuple[float, ...] = ()
        self._restarts = 0
        self._crashes = 0
        self._last_error: str | None = None
        self._exits_waited = 0  # exits that found the stream full and waited for room
        self._tg: TaskGroup | None = None
        self._exits_send, self._exits_recv = anyio.create_memory_object_stream[_Exit](EXIT_BUFFER)
        self._stopping = False

    # -- running -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        escalation: SupervisorEscalation | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                for i in range(len(self._children)):
                    await self._start(i)
                task_status.started()
                escalation = await self._watch()
            finally:
                hasty = escalation is not None and isinstance(escalation.cause, HOPELESS)
                with anyio.CancelScope(shield=True):
                    await self._stop_range(0, len(self._children), hasty=hasty)
                tg.cancel_scope.cancel()
        if escalation is not None:
            raise escalation

    def request_stop(self) -> None:
        """Stop every child last-first and return from ``run()`` normally."""
        self._stopping = True
        try:
            self._exits_send.send_nowait(_Exit(-1, -1, "shutdown", None))
        except anyio.WouldBlock:
            pass  # exits are waiting: the loop wakes on the next one and sees _stopping

    async def _watch(self) -> SupervisorEscalation | None:
        async for ex in self._exits_recv:
            if self._stopping:
                return None
            child = self._children[ex.index]
            if ex.generation != child.generation:
                continue  # an exit we caused while restarting; already handled
            self._emit(child, "exited", ex.reason, ex.error)
            if not _should_restart(child.spec.restart, ex.reason):
                continue
            self._window, exceeded = add_restart(
                self._window, self._clock.now(), self.intensity, self.period
            )
            if exceeded:
                self._emit(child, "escalated", ex.reason, ex.error)
                return SupervisorEscalation(self.name, child.spec.name, ex.error)
            await self._restart(ex.index)
            self._restarts += 1
        return None

    async def _restart(self, index: int) -> None:
        if self.strategy == "one_for_one":
            await self._start(index)
            self._emit(self._children[index], "restarted", None, None)
            return
        first = index if self.strategy == "rest_for_one" else 0
        await self._stop_range(first, len(self._children))
        for i in range(first, len(self._children)):
            await self._start(i)
        self._emit(self._children[index], "restarted", None, None)

    async def _start(self, index: int) -> None:
        assert self._tg is not None
        child = self._children[index]
        child.generation += 1
        child.done = anyio.Event()
        # A child that fails before it is ready still reports started (in its wrapper),
        # so its crash arrives as an exit like any other and counts against intensity.
        await self._tg.start(self._child_main, index, child.generation)

    async def _child_main(
        self, index: int, generation: int, *, task_status: TaskStatus[None]
    ) -> None:
        # One of the two places that catch broadly: an exception becomes an exit reason.
        child = self._children[index]
        reason: ExitReason = "normal"
        error: BaseException | None = None
        started = False

        def _started(value: Any = None) -> None:
            nonlocal started
            started = True
            task_status.started()

        status = _Status(_started)
        try:
            with anyio.CancelScope() as scope:
                child.scope = scope
                child.running = True
                child.starts += 1
                await child.spec.start(task_status=status)
            if scope.cancelled_caught:
                reason = "shutdown"
        except Exception as exc:
            reason, error = "crash", _leaf(exc)
            self._crashes += 1
            self._last_error = f"{child.spec.name}: {type(error).__name__}: {error}"
            log.error(
                "actor %s/%s crashed: %s: %s",
                self.name,
                child.spec.name,
                type(error).__name__,
                error,
                exc_info=None if isinstance(error, StoreError) else exc,  # a fault, not a bug
            )
        finally:
            child.running = False
            child.done.set()
            if not started:
                task_status.started()
            if generation == child.generation and not self._stopping:
                await self._report_exit(_Exit(index, generation, reason, error))

    async def _report_exit(self, ex: _Exit) -> None:
        """Hand ``ex`` to the loop; a full stream makes this wrapper wait for room."""
        try:
            self._exits_send.send_nowait(ex)
            return
        except anyio.WouldBlock:
            self._exits_waited += 1
            log.warning(
                "supervisor %s: exit stream full (%d waiting); the exit of %s waits for room",
                self.name,
                EXIT_BUFFER,
                self._children[ex.index].spec.name,
            )
        await self._exits_send.send(ex)  # cancelled only when the supervisor itself ends

    async def _stop_range(self, first: int, stop: int, *, hasty: bool = False) -> None:
        """Stop children ``first``..``stop`` last-first, each asked then given its
        ``shutdown`` seconds (``HASTY_STOP`` at most when ``hasty``) before it is
        cancelled."""
        for i in reversed(range(first, stop)):
            child = self._children[i]
            if not child.running:
                continue
            child.generation += 1  # its exit is ours, not a crash to react to
            if child.spec.stop is not None:
                child.spec.stop()
                wait = min(child.spec.shutdown, HASTY_STOP) if hasty else child.spec.shutdown
                with anyio.CancelScope() as grace:
                    self._clock.cancel_at(grace, self._clock.now() + wait)
                    await child.done.wait()
            if child.running and child.scope is not None:
                child.scope.cancel()
            await child.done.wait()
            self._emit(child, "exited", "shutdown", None)

    def _emit(
        self, child: _Child, kind: str, reason: str | None, error: BaseException | None
    ) -> None:
        if self._on_event is None:
            return
        text = f"{type(error).__name__}: {error}" if error is not None else None
        self._on_event(
            ActorEvent(
                supervisor=self.name,
                child=child.spec.name,
                kind=kind,  # type: ignore[arg-type]
                reason=reason,
                error=text,
            )
        )

    # -- introspection -------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        now = self._clock.now()
        return {
            "name": self.name,
            "strategy": self.strategy,
            "children": {
                c.spec.name: {"running": c.running, "starts": c.starts} for c in self._children
            },
            "restarts": self._restarts,
            "restarts_in_window": sum(1 for t in self._window if now - t < self.period),
            "crashes": self._crashes,
            "last_error": self._last_error,
            "exits_waited": self._exits_waited,
        }

    def __repr__(self) -> str:
        up = sum(1 for c in self._children if c.running)
        return (
            f"<Supervisor {self.name} {self.strategy} {up}/{len(self._children)} up "
            f"restarts={self._restarts}>"
        )


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside nested single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _should_restart(restart: Restart, reason: ExitReason) -> bool:
    if restart == "permanent":
        return True
    if restart == "transient":
        return reason == "crash"
    return False


class _Status:
    """Adapts anyio's task status so the wrapper knows whether the child got ready."""

    __slots__ = ("_cb",)

    def __init__(self, cb: Callable[[Any], None]) -> None:
        self._cb = cb

    def started(self, value: Any = None) -> None:
        self._cb(value)
