"""The controls side of ``Runtime``: pause, resume, drain, and the rate limits in force.

- ``pause(scope, name=None, reason=None)``: hold the queued dispatches of a scope —
  ``runtime`` (everything), ``job``, ``pool``, ``executor`` or ``agent`` (by name).
  Paused work stays ``queued`` and visible; running runs go on; the pause is stored, so
  it survives a restart. Pausing what is paused keeps the first pause.
- ``resume(scope, name=None)``: the scope's dispatches go back to admission at once;
  ``resume("all")`` lifts every pause. Resuming what is not paused is ``NotFound``.
- ``drain(timeout=None)``: pause the runtime, then wait until no run is in flight; the
  runtime stays paused (``resume("runtime")`` or ``resume("all")`` to go on).
- ``pauses()``, ``rates()``: what is in force (the rates with their tokens now).

``ControlsApi`` is a plain collaborator the façade holds; it owns no state: it writes
through the store writer and tells the dispatcher (``Poke(controls=True)``, or
``Quiesce`` for a drain). ``pause_target`` checks a scope and name for the API and the
CLI alike: a malformed one is a ConfigError naming ``scope`` / ``name`` / ``reason``; a
name nothing knows is ``NotFound``; nothing is stored either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import anyio
import msgspec

from shepherd.actors.messages import DispatcherMsg, Poke, Quiesce
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, ask
from shepherd.actors.writer import StoreMsg, write
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import PAUSE_SCOPES, Pause, PauseScope
from shepherd.store.ops import ClearPauses, SetPause
from shepherd.store.protocol import Store

__all__ = ["ControlsApi", "Drained", "known_names", "pause_target", "resume_target"]

MAX_NAME = 200
MAX_REASON = 1000


class Drained(msgspec.Struct, frozen=True, kw_only=True):
    """What ``drain`` found: ``drained`` (nothing runs), the runs it waited for, the
    runs still in flight at the timeout, and how long it took (seconds)."""

    drained: bool
    waited_for: int
    running: int
    seconds: float


def pause_target(
    scope: str, name: str | None, known: Callable[[str], Iterable[str]]
) -> tuple[PauseScope, str]:
    """``(scope, name)`` checked: ``known(scope)`` lists the names that exist."""
    scope, name = _shape(scope, name)
    if scope != "runtime" and name not in set(known(scope)):
        raise NotFound(f"no {scope} named {name!r} to pause")
    return scope, name


def resume_target(scope: str, name: str | None) -> tuple[PauseScope | None, str]:
    """``(None, "")`` for ``all``; else the checked scope and name."""
    if scope == "all":
        if name:
            raise ConfigError("resume all takes no name", field="name")
        return None, ""
    return _shape(scope, name)


def _shape(scope: str, name: str | None) -> tuple[PauseScope, str]:
    if scope not in PAUSE_SCOPES:
        raise ConfigError(
            f"unknown scope {scope!r}; expected one of {', '.join(PAUSE_SCOPES)}", field="scope"
        )
    if scope == "runtime":
        if name:
            raise ConfigError("the runtime scope takes no name", field="name")
        return "runtime", ""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"pausing a {scope} needs its name", field="name")
    _check_text(name, MAX_NAME, "name")
    return scope, name  # type: ignore[return-value]  # checked against PAUSE_SCOPES


def check_reason(reason: str | None) -> None:
    if reason is not None:
        _check_text(reason, MAX_REASON, "reason")


def _check_text(text: object, most: int, field: str) -> None:
    if not isinstance(text, str) or len(text) > most:
        raise ConfigError(f"expected a text of at most {most} characters", field=field)
    if any(ord(c) < 32 and c not in "\t" for c in text):
        raise ConfigError("must not hold control characters", field=field)


async def known_names(
    store: Store, scope: str, executors: Iterable[str], pools: Iterable[str]
) -> list[str]:
    """The names of ``scope`` that exist: jobs; pools of the config or of a job;
    executors built here or named by a job; agents registered or named by a job."""
    rows = await store.jobs()
    if scope == "job":
        return [r.name for r in rows]
    if scope == "pool":
        return [*pools, *(r.spec.pool for r in rows if r.spec.pool)]
    if scope == "executor":
        return [*executors, *(r.spec.executor for r in rows)]
    if scope == "agent":
        agents = [a.id for a in await store.agents()]
        return agents + [r.spec.target or "main" for r in rows if r.spec.executor == "agent"]
    return []


class ControlsApi:
    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        instance: str,
        writer: Address[StoreMsg],
        dispatcher: Address[DispatcherMsg],
        executors: Iterable[str],
        pools: Iterable[str],
        snapshot: Callable[[], dict[str, Any]],
    ) -> None:
        self.clock = clock
        self.store = store
        self.instance = instance
        self._writer = writer
        self._dispatcher = dispatcher
        self._executors = executors
        self._pools = list(pools)
        self._snapshot = snapshot

    async def pause(self, scope: str, name: str | None = None, reason: str | None = None) -> Pause:
        """Hold the queued dispatches of ``scope`` / ``name``; returns the pause in force."""
        check_reason(reason)
        names = await known_names(self.store, scope, self._executors, self._pools)
        s, n = pause_target(scope, name, lambda _: names)
        op = SetPause(scope=s, name=n, at=self.clock.wall(), by=self.instance, reason=reason)
        await write(self._writer, op)
        await self._dispatcher.send(Poke(controls=True))
        return next(p for p in await self.store.pauses() if (p.scope, p.name) == (s, n))

    async def resume(self, scope: str, name: str | None = None) -> list[str]:
        """Lift a pause (``"all"``: every pause); its dispatches start at once. Returns
        the keys resumed (``job:nightly``); NotFound if nothing was paused there."""
        s, n = resume_target(scope, name)
        resumed: list[str] = await write(self._writer, ClearPauses(scope=s, name=n))
        await self._dispatcher.send(Poke(controls=True))
        if not resumed and s is not None:
            what = "the runtime" if s == "runtime" else f"{s} {n!r}"
            raise NotFound(f"{what} is not paused")
        return resumed

    async def pauses(self) -> list[Pause]:
        return await self.store.pauses()

    async def drain(self, timeout: float | None = None) -> Drained:
        """Pause the runtime (nothing more is admitted), then wait until no run is in
        flight, at most ``timeout`` seconds. The runtime stays paused."""
        if timeout is not None and not timeout >= 0:
            raise ConfigError("must be >= 0 seconds", field="timeout")
        began = self.clock.now()
        waited = (await self.store.stats())["runs_running"]  # read before the pause holds
        op = SetPause(
            scope="runtime", name="", at=self.clock.wall(), by=self.instance, reason="drain"
        )
        await write(self._writer, op)
        with anyio.CancelScope() as scope:
            if timeout is not None:
                self.clock.cancel_at(scope, began + timeout)
            await ask(self._dispatcher, Quiesce)
        running = (await self.store.stats())["runs_running"] if scope.cancelled_caught else 0
        return Drained(
            drained=not scope.cancelled_caught,
            waited_for=waited,
            running=running,
            seconds=round(self.clock.now() - began, 6),
        )

    def rates(self) -> dict[str, dict[str, Any]]:
        """Each token bucket in force: rate, burst, tokens now, taken, deferred."""
        rates: dict[str, dict[str, Any]] = self._snapshot().get("dispatcher", {}).get("rates", {})
        return rates
