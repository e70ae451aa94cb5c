"""``Runtime``: the public, embeddable API, a façade over plain collaborators. The
module is long because its table of delegates names every public call in one place.

    async with Runtime.open(Config(database="app.db"), targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        dispatch_id = await rt.enqueue("noop", {"x": 1})
        final = await rt.wait(dispatch_id)

``Runtime.open`` locks the database, opens the store, builds the executors and starts
the actor tree (``runtime/tree.py``; commands via a fork server, ``forker.serving``).
Leaving the ``async with`` stops admitting, lets runs finish for ``shutdown_grace`` s,
cancels the rest (their delivery guarantee applies), stops the actors, checkpoints.

Plain collaborators answer the calls (``JobsApi``, ``QueriesApi``, ``Messaging``, ...:
``runtime/_*_api.py``, ``messaging.py``); the table at the top of the class says which
call goes where; ``rt.add_job`` *is* the jobs side's bound method (``delegate``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from shepherd.actors.cluster import default_node_name
from shepherd.actors.executors import forker
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.external import ExternalExecutor
from shepherd.actors.executors.gateway import HttpClient
from shepherd.actors.executors.python import PythonExecutor, PythonTarget
from shepherd.actors.executors.shell import ShellExecutor
from shepherd.actors.messages import OutcomeEvent, RunStarted, SlotRecord
from shepherd.actors.primitives.clock import Clock, RealClock
from shepherd.actors.primitives.supervisor import ActorEvent, Supervisor
from shepherd.runtime._agents_api import AgentsApi
from shepherd.runtime._approvals_api import ApprovalsApi
from shepherd.runtime._controls_api import ControlsApi
from shepherd.runtime._delegate import delegate
from shepherd.runtime._groups_api import GroupsApi
from shepherd.runtime._jobs_api import JobsApi
from shepherd.runtime._lock import lock_database
from shepherd.runtime._queries_api import QueriesApi
from shepherd.runtime.config import Config
from shepherd.runtime.events import EventHub, held_news
from shepherd.runtime.host import RuntimeHost, process_journal
from shepherd.runtime.messaging import Messaging, gateway_executors
from shepherd.runtime.spawn import Spawner
from shepherd.runtime.targets import PayloadType, TargetSource, python_executor
from shepherd.runtime.tree import Fanout, Inboxes, build_tree
from shepherd.store.errors import SupervisorEscalation, leaves
from shepherd.store.factory import open_store
from shepherd.store.protocol import Store

__all__ = ["Runtime"]


class Runtime:
    # -- jobs and enqueue: runtime/_jobs_api.py ------------------------------------
    add_job = delegate("_jobs_api", JobsApi.add_job)
    update_job = delegate("_jobs_api", JobsApi.update_job)
    set_enabled = delegate("_jobs_api", JobsApi.set_enabled)
    enable = delegate("_jobs_api", JobsApi.enable)
    disable = delegate("_jobs_api", JobsApi.disable)
    remove_job = delegate("_jobs_api", JobsApi.remove_job)
    run_now = delegate("_jobs_api", JobsApi.run_now)
    next_fires = delegate("_jobs_api", JobsApi.next_fires)
    get_job = delegate("_jobs_api", JobsApi.get_job)
    list_jobs = delegate("_jobs_api", JobsApi.list_jobs)
    enqueue = delegate("_jobs_api", JobsApi.enqueue)
    enqueue_many = delegate("_jobs_api", JobsApi.enqueue_many)
    # -- dispatches, runs, dead letters: runtime/_queries_api.py -------------------
    wait = delegate("_queries", QueriesApi.wait)
    cancel = delegate("_queries", QueriesApi.cancel)
    dispatch = delegate("_queries", QueriesApi.dispatch)
    dispatches = delegate("_queries", QueriesApi.dispatches)
    runs = delegate("_queries", QueriesApi.runs)
    run = delegate("_queries", QueriesApi.run)
    dead_letters = delegate("_queries", QueriesApi.dead_letters)
    retry_dead = delegate("_queries", QueriesApi.retry_dead)
    purge_dead = delegate("_queries", QueriesApi.purge_dead)
    # -- approval gates: runtime/_approvals_api.py -----------------------------------
    approvals = delegate("_approvals_api", ApprovalsApi.approvals)
    approval = delegate("_approvals_api", ApprovalsApi.approval)
    approve = delegate("_approvals_api", ApprovalsApi.approve)
    reject = delegate("_approvals_api", ApprovalsApi.reject)
    # -- inboxes, deliveries, sinks: runtime/messaging.py --------------------------
    register_delivery_sink = delegate("_messaging", Messaging.register_delivery_sink)
    deliver = delegate("_messaging", Messaging.deliver)
    deliveries = delegate("_messaging", Messaging.deliveries)
    retry_deliveries = delegate("_messaging", Messaging.retry_deliveries)
    send_message = delegate("_messaging", Messaging.send_message)
    inbox = delegate("_messaging", Messaging.inbox)
    messages = delegate("_messaging", Messaging.messages)
    mark_delivered = delegate("_messaging", Messaging.mark_delivered)
    mark_read = delegate("_messaging", Messaging.mark_read)
    # -- the agents registry: runtime/_agents_api.py --------------------------------
    agents = delegate("_agents_api", AgentsApi.agents)
    agent = delegate("_agents_api", AgentsApi.agent)
    add_agent = delegate("_agents_api", AgentsApi.add_agent)
    update_agent = delegate("_agents_api", AgentsApi.update_agent)
    drain_agent = delegate("_agents_api", AgentsApi.drain_agent)
    undrain_agent = delegate("_agents_api", AgentsApi.undrain_agent)
    remove_agent = delegate("_agents_api", AgentsApi.remove_agent)
    agent_heartbeat = delegate("_agents_api", AgentsApi.agent_heartbeat)
    agent_seen = delegate("_agents_api", AgentsApi.agent_seen)
    ack = delegate("_messaging", Messaging.ack)
    message = delegate("_messaging", Messaging.message)
    thread = delegate("_messaging", Messaging.thread)
    # -- task groups (the dead-man switch): runtime/_groups_api.py -----------------
    create_group = delegate("_groups_api", GroupsApi.create_group)
    report = delegate("_groups_api", GroupsApi.report)
    heartbeat = delegate("_groups_api", GroupsApi.heartbeat)
    group = delegate("_groups_api", GroupsApi.group)
    groups = delegate("_groups_api", GroupsApi.groups)
    # -- pause, resume, drain, rate limits: runtime/_controls_api.py ----------------
    pause = delegate("_controls", ControlsApi.pause)
    resume = delegate("_controls", ControlsApi.resume)
    pauses = delegate("_controls", ControlsApi.pauses)
    drain = delegate("_controls", ControlsApi.drain)
    rates = delegate("_controls", ControlsApi.rates)
    nodes = delegate("store", Store.nodes)  # the cluster's nodes (actors/cluster.py)

    def __init__(
        self,
        cfg: Config,
        store: Store,
        clock: Clock,
        executors: dict[str, Executor],
        http: HttpClient | None = None,
        instance: str | None = None,
    ):
        self.config = cfg
        self.store = store
        self.clock = clock
        self.instance = instance or cfg.cluster.node or default_node_name()  # the node name
        self.executors = executors
        self.http = http or HttpClient()
        self.events = EventHub()
        self.actor_events: list[ActorEvent] = []
        self._inboxes = Inboxes(cfg.concurrency)
        self._writer = self._inboxes.store.address()
        self._dispatcher = self._inboxes.dispatcher.address()
        self._scheduler = self._inboxes.scheduler.address()
        self._router = self._inboxes.router.address()
        self._fanout = Fanout(
            self.events,
            {
                "router": self._router,
                "scheduler": self._scheduler,
                "approvals": self._inboxes.approvals.address(),
            },
        )
        self._spawner = Spawner(
            clock=clock,
            store=store,
            executors=executors,
            instance=self.instance,
            writer=self._writer,
            dispatcher=self._dispatcher,
            scheduler=self._scheduler,
            approvals=self._inboxes.approvals.address(),
        )
        self._messaging = Messaging(
            store=store, clock=clock, writer=self._writer, router=self._router,
            spawner=self._spawner,
        )  # fmt: skip
        self._groups_api = GroupsApi(
            clock=clock,
            store=store,
            writer=self._writer,
            groups=self._inboxes.groups.address(),
            delivery=cfg.delivery,
        )
        self._jobs_api = JobsApi(
            clock=clock,
            executors=executors,
            store=store,
            instance=self.instance,
            writer=self._writer,
            dispatcher=self._dispatcher,
            scheduler=self._scheduler,
            forget_job=self._messaging.forget_job,
            approvals=self._inboxes.approvals.address(),
            news=partial(held_news, store, self._fanout.publish, self.events.wants),
        )
        self._approvals_api = ApprovalsApi(
            clock=clock,
            store=store,
            instance=self.instance,
            writer=self._writer,
            dispatcher=self._dispatcher,
            emit=self._fanout.publish,
        )
        self._queries = QueriesApi(
            clock=clock,
            store=store,
            instance=self.instance,
            events=self.events,
            writer=self._writer,
            dispatcher=self._dispatcher,
        )
        self._agents_api = AgentsApi(
            store=store, writer=self._writer, dispatcher=self._dispatcher, clock=clock
        )
        self._controls = ControlsApi(
            clock=clock,
            store=store,
            instance=self.instance,
            writer=self._writer,
            dispatcher=self._dispatcher,
            executors=executors,
            pools=cfg.pools,
            snapshot=self.statistics,
        )
        self._root: Supervisor | None = None
        self._actors: dict[str, Any] = {}
        self.asgi_app: Any = None

    # -- opening and closing -------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: Config | None = None,
        *,
        targets: TargetSource | None = None,
        executors: Iterable[Executor] = (),
        clock: Clock | None = None,
        on_event: Callable[[Any], None] | None = None,
    ) -> AsyncIterator[Runtime]:
        """``on_event`` hears every run start, outcome and slot record from before the
        tree starts (a subscription made after ``open`` misses what recovery ran)."""
        cfg = config or Config()
        python = python_executor(cfg.app, targets)  # a bad app: refused, nothing opened
        node = cfg.cluster.node or default_node_name()
        lock = await lock_database(cfg.database)  # none for PostgreSQL: nodes have leases
        try:
            store = await open_store(
                cfg.database,
                synchronous=cfg.synchronous,
                busy_timeout=float(cfg.busy_timeout),
                check=cfg.store_check,
                node=node,
            )
        except BaseException:
            lock.close()
            raise
        table: dict[str, Executor] = {"python": python, "shell": ShellExecutor()}
        clock = clock or RealClock()
        table["external"] = ExternalExecutor(clock)  # runs that workers claim over HTTP
        http = HttpClient(max_connections=cfg.gateway.max_connections if cfg.gateway else 256)
        table.update(gateway_executors(cfg, http, clock))
        for ex in executors:
            table[ex.name] = ex
        rt = cls(cfg, store, clock, table, http, instance=node)
        if on_event is not None:
            rt.events.listen(on_event, RunStarted, OutcomeEvent, SlotRecord)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(rt._serve)
                await rt._jobs_api.add_config_jobs(cfg.jobs)
                await rt._agents_api.register_config_agents(cfg)
                await rt._spawner.adopt_pending()  # spawn messages another writer left
                try:
                    yield rt
                finally:
                    with anyio.CancelScope(shield=True):
                        await rt._stop()
        except BaseExceptionGroup as group:
            # The caller's own exception (or the tree's escalation) comes out as itself,
            # not wrapped in the task group's ExceptionGroup.
            escalation = next(
                (e for e in leaves(group) if isinstance(e, SupervisorEscalation)), None
            )
            if escalation is not None:
                raise escalation from None
            inner = leaves(group)
            if len(inner) == 1:
                raise inner[0] from None
            raise
        finally:
            if "http" in rt._actors:
                rt._actors["http"].close()
            with anyio.CancelScope(shield=True):
                await rt.http.aclose()
                await store.close()
            lock.close()

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with forker.serving():  # the tree's shell and watchdog commands go through it
            self._root, self._actors = build_tree(
                self.config,
                instance=self.instance,
                store=self.store,
                clock=self.clock,
                inboxes=self._inboxes,
                executors=self.executors,
                emit=self._fanout.publish,
                host=RuntimeHost(
                    store=self.store,
                    writer=self._writer,
                    router=self._router,
                    clock=self.clock,
                    retire=self._jobs_api.retire_job,
                    journal=process_journal(self.config, self.instance),
                ),
                snapshot=self.statistics,
                sinks=self._messaging.sinks,
                http=self.http,
                on_event=self.actor_events.append,
                producer=self._jobs_api,
                forget_jobs=self._jobs_api.forget_jobs,
                asgi=self._asgi(),
                wants=self.events.wants,
            )
            self._jobs_api.commit_now = self._actors["store"].commit_now
            if isinstance(external := self.executors.get("external"), ExternalExecutor):
                external.board.room = self._actors["dispatcher"].agent_room  # its limits
            await self._root.run(task_status=task_status)

    def _asgi(self) -> Any:
        """The HTTP API's app when ``[http] listen`` is set (built once, kept across
        restarts of the tree); ``None`` otherwise."""
        if not self.config.http.listen:
            return None
        if self.asgi_app is None:
            from shepherd.runtime.http import build_app

            self.asgi_app = build_app(self)
        return self.asgi_app

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) the HTTP API listens on, once it does (port 0 resolved)."""
        server = self._actors.get("http")
        return server.address if server is not None else None

    async def _stop(self) -> None:
        if (dispatcher := self._actors.get("dispatcher")) is not None:
            dispatcher.hold()  # nothing new starts (an unclaimed run given back included)
        external = self.executors.get("external")
        if isinstance(external, ExternalExecutor):
            external.board.close()  # long-polling claims answer now
        if self._root is not None:
            self._root.request_stop()

    # -- executors -------------------------------------------------------------------

    def register(self, name: str, fn: PythonTarget, *, payload: PayloadType | None = None) -> None:
        """Register an async callable as the ``python`` target ``name`` (of ``payload``)."""
        python = self.executors["python"]
        assert isinstance(python, PythonExecutor)
        python.register(name, fn, payload=payload)

    # -- events and introspection -------------------------------------------------

    def subscribe(self, *kinds: type, buffer: int = 10_000) -> Any:
        """``async with rt.subscribe(OutcomeEvent) as events: async for ev in events: …``"""
        return self.events.subscribe(*kinds, buffer=buffer)

    async def stats(self) -> dict[str, Any]:
        return await self.store.stats()

    def statistics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "instance": self.instance,
            "start_check": self.store.statistics().get("start_check"),  # "full 0.012s"
            "events": {**self.events.statistics(), **self._fanout.statistics()},
        }
        if self._root is not None:
            out["supervisor"] = self._root.statistics()
        external = self.executors.get("external")
        if isinstance(external, ExternalExecutor):
            out["leases"] = external.statistics()  # stale: refused stale-token reports
        for name, actor in self._actors.items():
            out[name] = actor.statistics()
        out["store"] = {**out.get("store", {}), **self.store.statistics()}
        return out

    def __repr__(self) -> str:
        return f"<Runtime {self.config.database} {self.instance}>"
