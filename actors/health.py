"""The health monitor: the runtime's periodic look at itself and its gateways.

Role: every ``interval`` seconds (a timer on the injected clock, not on the hot path)
1. tells the dispatcher ``Tick`` — it writes the batched heartbeats of running runs
   (one commit for all of them) and ends runs past their idle / absolute deadline that
   their own run actor failed to end (``stale``);
2. probes each executor that has ``probe_health()`` (the agent gateway's ``/health``)
   and tells the dispatcher ``Probe(executor, healthy)``, which feeds that executor's
   circuit breaker;
3. checks the agents' liveness (``actors.liveness``: gateway agents heartbeat through
   the probe; an agent silent past ``[agents] offline_after`` is marked offline);
4. writes the runtime's health snapshot (actors, supervisor, breakers, recovery time)
   to the ``instances`` table so ``shepherd status`` in another process can show it;
5. checks that the database file and its WAL are still the ones the store opened
   (``Store.check_files``, at start too): a file removed or replaced under a running
   runtime raises ``DatabaseReplaced``, which crashes this actor at every restart, so
   the supervisor escalates and the runtime stops (exit 3) instead of committing on
   into a file no one else reads.
Inbox: none (timer-driven). Sends: ``Tick`` and ``Probe`` to the dispatcher, a
``SaveStatus`` op to the store writer. Restart type: permanent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors.executors.base import Executor
from shepherd.actors.liveness import Liveness
from shepherd.actors.messages import DispatcherMsg, Probe, Tick
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.writer import StoreMsg, write
from shepherd.store.errors import MailboxFull, StoreError
from shepherd.store.ops import SaveStatus

__all__ = ["HealthMonitor"]

log = logging.getLogger("shepherd.health")


class HealthMonitor:
    def __init__(
        self,
        *,
        instance: str,
        clock: Clock,
        dispatcher: Address[DispatcherMsg],
        writer: Address[StoreMsg],
        executors: Mapping[str, Executor],
        snapshot: Callable[[], dict[str, Any]],
        interval: float = 2.0,
        probe_timeout: float = 5.0,
        liveness: Liveness | None = None,
        check_files: Callable[[], None] | None = None,
    ) -> None:
        self._check_files = check_files
        self._liveness = liveness
        self._instance = instance
        self._clock = clock
        self._dispatcher = dispatcher
        self._writer = writer
        self._executors = executors
        self._snapshot = snapshot
        self._interval = interval
        self._probe_timeout = probe_timeout
        self._started_at = clock.wall()
        self._stop = anyio.Event()
        self.ticks = 0
        self.probes: dict[str, bool] = {}
        self.last_error: str | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._stop = anyio.Event()  # a restart begins with a fresh stop signal
        task_status.started()
        self._files()
        while not self._stop.is_set():
            with anyio.CancelScope() as wait:
                self._clock.cancel_at(wait, self._clock.now() + self._interval)
                await self._stop.wait()
            if not self._stop.is_set():
                await self.tick()
        await self._save(stopped=True)  # a graceful stop leaves a final snapshot

    def stop(self) -> None:
        """Graceful stop (the supervisor's stop hook): write a last snapshot and return."""
        self._stop.set()

    def _files(self) -> None:
        if self._check_files is None:
            return
        try:
            self._check_files()
        except StoreError as exc:
            log.critical("%s", exc)
            raise

    async def tick(self) -> None:
        self.ticks += 1
        self._files()
        try:
            self._dispatcher.tell(Tick())
        except MailboxFull:
            log.warning("dispatcher inbox full; skipping a health tick")
        for name, executor in self._executors.items():
            probe = getattr(executor, "probe_health", None)
            if probe is None:
                continue
            healthy = False
            with anyio.move_on_after(self._probe_timeout):
                healthy = bool(await probe())
            if self.probes.get(name) != healthy:
                log.log(
                    logging.INFO if healthy else logging.WARNING,
                    "gateway of executor %s is %s",
                    name,
                    "up" if healthy else "DOWN",
                )
            self.probes[name] = healthy
            await self._dispatcher.send(Probe(name, healthy))
        if self._liveness is not None:
            await self._liveness.check(self.probes)
        await self._save()

    async def _save(self, *, stopped: bool = False) -> None:
        try:
            status = msgspec.json.encode(self._snapshot(), enc_hook=repr)
            await write(
                self._writer,
                SaveStatus(
                    self._instance,
                    os.getpid(),
                    self._started_at,
                    self._clock.wall(),
                    status,
                    stopped=stopped,
                ),
            )
        except StoreError as exc:
            self.last_error = str(exc)
            log.error("health snapshot not written: %s", exc)

    def statistics(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "probes": dict(self.probes), "last_error": self.last_error}

    def __repr__(self) -> str:
        return f"<HealthMonitor ticks={self.ticks} every {self._interval:g}s>"
