"""``Runtime``: the public, embeddable API and the composition of the actor tree.

    async with Runtime.open(Config(database="app.db"), targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        dispatch_id = await rt.enqueue("noop", {"x": 1})
        final = await rt.wait(dispatch_id)

The tree (DESIGN.md): root supervisor (rest_for_one) → store writer, router, dispatcher
(with its run supervisor), scheduler, health monitor, ingest, pruner. Leaving the
``async with`` stops admitting, lets running runs finish for ``shutdown_grace`` seconds,
cancels the rest (their delivery guarantee applies), stops the actors last-first and
checkpoints the database.

The API methods live in mixins, one module each: ``runtime/_jobs_api.py`` (jobs,
enqueue), ``runtime/_queries_api.py`` (dispatches, runs, dead letters) and
``runtime/messaging.py`` (inboxes, deliveries, sinks).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskStatus

from shepherd.actors.clock import Clock, RealClock
from shepherd.actors.dispatcher import Dispatcher, DispatcherConfig
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.gateway import HttpClient
from shepherd.actors.executors.python import PythonExecutor, PythonTarget
from shepherd.actors.executors.shell import ShellExecutor
from shepherd.actors.health import HealthMonitor
from shepherd.actors.ingest import Ingest
from shepherd.actors.mailbox import Mailbox, Reply
from shepherd.actors.messages import DispatcherMsg, Drain, Event, OutcomeEvent
from shepherd.actors.pruner import Pruner, PrunerMsg
from shepherd.actors.pruner import Stop as StopPruner
from shepherd.actors.scheduler import Outcome, Scheduler, SchedulerConfig, SchedulerMsg
from shepherd.actors.supervisor import ActorEvent, ChildSpec, Supervisor
from shepherd.actors.writer import StoreMsg, StoreWriter
from shepherd.runtime._jobs_api import JobsMixin
from shepherd.runtime._lock import lock_database
from shepherd.runtime._queries_api import QueriesMixin
from shepherd.runtime.config import Config
from shepherd.runtime.events import EventHub
from shepherd.runtime.messaging import MessagingMixin, gateway_executors
from shepherd.store import queries
from shepherd.store.errors import (
    MailboxClosed,
    MailboxFull,
    SupervisorEscalation,
)
from shepherd.store.models import JobRow
from shepherd.store.sqlite import SqliteStore

__all__ = ["Runtime"]

log = logging.getLogger("shepherd")


class Runtime(JobsMixin, QueriesMixin, MessagingMixin):
    def __init__(
        self, cfg: Config, store: SqliteStore, clock: Clock, executors: dict[str, Executor]
    ):
        self.config = cfg
        self.store = store
        self.clock = clock
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.executors = executors
        self.events = EventHub()
        self.actor_events: list[ActorEvent] = []
        self._writer_mb: Mailbox[StoreMsg] = Mailbox("store", 100_000)
        self._dispatcher_mb: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 100_000)
        self._writer = self._writer_mb.address()
        self._dispatcher = self._dispatcher_mb.address()
        self._scheduler_mb: Mailbox[SchedulerMsg] = Mailbox("scheduler", 100_000)
        self._scheduler = self._scheduler_mb.address()
        self.lost_outcomes = 0
        self._jobs: dict[str, JobRow] = {}
        self._root: Supervisor | None = None
        # operator requests only (PruneNow, Stop): a small inbox
        self._pruner_mb: Mailbox[PrunerMsg] = Mailbox("pruner", 16)
        self._pruner = self._pruner_mb.address()
        self._actors: dict[str, Any] = {}
        self._init_messaging()

    # -- opening and closing -------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: Config | None = None,
        *,
        targets: Mapping[str, PythonTarget] | None = None,
        executors: Iterable[Executor] = (),
        clock: Clock | None = None,
    ) -> AsyncIterator[Runtime]:
        cfg = config or Config()
        lock = await lock_database(cfg.database)
        try:
            store = await SqliteStore.open(
                cfg.database, synchronous=cfg.synchronous, busy_timeout=float(cfg.busy_timeout)
            )
        except BaseException:
            lock.close()
            raise
        python = PythonExecutor()
        for name, fn in (targets or {}).items():
            python.register(name, fn)
        table: dict[str, Executor] = {"python": python, "shell": ShellExecutor()}
        clock = clock or RealClock()
        http = HttpClient(max_connections=cfg.gateway.max_connections if cfg.gateway else 256)
        table.update(gateway_executors(cfg, http, clock))
        for ex in executors:
            table[ex.name] = ex
        rt = cls(cfg, store, clock or RealClock(), table)
        rt.http = http
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(rt._serve)
                for spec in cfg.jobs:
                    await rt.add_job(spec)
                try:
                    yield rt
                finally:
                    with anyio.CancelScope(shield=True):
                        await rt._stop()
        except BaseExceptionGroup as group:
            # The caller's own exception (or the tree's escalation) comes out as itself,
            # not wrapped in the task group's ExceptionGroup.
            escalation = _find(group, SupervisorEscalation)
            if escalation is not None:
                raise escalation from None
            leaves = _leaves(group)
            if len(leaves) == 1:
                raise leaves[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await rt._close_messaging()
                await store.close()
            lock.close()

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        writer = StoreWriter(self.store, self._writer_mb)
        dispatcher = Dispatcher(
            DispatcherConfig(
                instance=self.instance,
                concurrency=cfg.concurrency,
                pool_limits=dict(cfg.pools),
                data_dir=cfg.artifacts_dir,
                breaker_fail_max=cfg.breaker_fail_max,
                breaker_reset=float(cfg.breaker_reset),
            ),
            store=self.store,
            writer=self._writer_mb.address(),
            mailbox=self._dispatcher_mb,
            executors=self.executors,
            clock=self.clock,
            emit=self._publish,
            services={"runtime": self},
        )
        scheduler = Scheduler(
            SchedulerConfig(instance=self.instance),
            store=self.store,
            writer=self._writer_mb.address(),
            mailbox=self._scheduler_mb,
            dispatcher=self._dispatcher_mb.address(),
            clock=self.clock,
            emit=self._publish,
        )
        ingest = Ingest(cfg.database, self._dispatcher_mb.address(), self._scheduler_mb.address())
        health = HealthMonitor(
            instance=self.instance,
            clock=self.clock,
            dispatcher=self._dispatcher_mb.address(),
            writer=self._writer_mb.address(),
            executors=self.executors,
            snapshot=self.statistics,
            interval=float(cfg.health_interval),
        )
        pruner = Pruner(
            cfg.retention,
            writer=self._writer_mb.address(),
            mailbox=self._pruner_mb,
            clock=self.clock,
            store=self.store,
            checkpoint_every=float(cfg.health_interval),
        )
        self._actors = {
            "store": writer,
            "dispatcher": dispatcher,
            "scheduler": scheduler,
            "health": health,
            "ingest": ingest,
            "pruner": pruner,
        }
        router, router_spec = self._router_child()
        self._actors["router"] = router
        grace = float(cfg.shutdown_grace)
        self._root = Supervisor(
            "root",
            [
                ChildSpec(name="store", start=writer.run),
                # before the dispatcher: on shutdown (last-first) the router outlives the
                # drain and announces its outcomes; the price is that a router crash
                # restarts the dispatcher too (rest_for_one)
                router_spec,
                ChildSpec(
                    name="dispatcher",
                    start=dispatcher.run,
                    shutdown=grace + 10.0,
                    stop=lambda: self._dispatcher.tell(Drain(grace, Reply())),
                ),
                ChildSpec(name="scheduler", start=scheduler.run, shutdown=1.0),
                ChildSpec(name="health", start=health.run, shutdown=3.0, stop=health.stop),
                # after the dispatcher and the scheduler have loaded the store: once its
                # socket is bound it pokes both to read what was committed meanwhile
                ChildSpec(name="ingest", start=ingest.run, shutdown=1.0),
                ChildSpec(name="pruner", start=pruner.run, shutdown=3.0, stop=self._stop_pruner),
            ],
            strategy="rest_for_one",
            intensity=cfg.restart_intensity,
            period=float(cfg.restart_period),
            clock=self.clock,
            on_event=self.actor_events.append,
        )
        await self._root.run(task_status=task_status)

    def _stop_pruner(self) -> None:
        try:  # a full inbox: the supervisor cancels it after its shutdown grace
            self._pruner.tell(StopPruner())
        except (MailboxFull, MailboxClosed):
            pass

    async def _stop(self) -> None:
        if self._root is not None:
            self._root.request_stop()

    def _publish(self, event: Event) -> None:
        self.events.publish(event)
        self._route(event)
        if isinstance(event, OutcomeEvent) and event.kind == "schedule" and event.final:
            try:  # never blocks the dispatcher; a lost outcome only skips error bookkeeping
                self._scheduler.tell(
                    Outcome(
                        job_id=event.job_id,
                        job=event.job,
                        dispatch_id=event.dispatch_id,
                        outcome=event.outcome,
                        final=event.final,
                        slot=event.slot,
                        kind=event.kind,
                        at=event.at,
                    )
                )
            except (MailboxFull, MailboxClosed):
                self.lost_outcomes += 1
                log.warning("scheduler missed the outcome of dispatch %s", event.dispatch_id)

    # -- executors -------------------------------------------------------------------

    def register(self, name: str, fn: PythonTarget) -> None:
        """Register an async callable as the ``python`` target ``name``."""
        python = self.executors["python"]
        assert isinstance(python, PythonExecutor)
        python.register(name, fn)

    # -- events and introspection -------------------------------------------------

    def subscribe(self, *kinds: type, buffer: int = 10_000) -> Any:
        """``async with rt.subscribe(OutcomeEvent) as events: async for ev in events: …``"""
        return self.events.subscribe(*kinds, buffer=buffer)

    async def stats(self) -> dict[str, Any]:
        return await self.store.read(queries.stats)

    def statistics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instance": self.instance, "events": self.events.statistics()}
        if self._root is not None:
            out["supervisor"] = self._root.statistics()
        for name, actor in self._actors.items():
            out[name] = actor.statistics()
        out["store"] = {**out.get("store", {}), **self.store.statistics()}
        return out

    def __repr__(self) -> str:
        return f"<Runtime {self.config.database} {self.instance}>"


# -- helpers ----------------------------------------------------------------------------


def _find(group: BaseExceptionGroup[Any], kind: type[SupervisorEscalation]) -> Any:
    for exc in group.exceptions:
        if isinstance(exc, kind):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _find(exc, kind)
            if found is not None:
                return found
    return None


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out += _leaves(exc)
        else:
            out.append(exc)
    return out
