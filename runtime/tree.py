"""The actor tree, wired in one place and readable as data.

``TREE`` is the root supervisor's children in start order (they stop last-first), with
their restart types, shutdown graces and why each sits where it does; ``STRATEGY`` is
the root's strategy. ``INBOXES`` (``runtime.inboxes``) is every mailbox's capacity and
what flows into it.
``ROUTES`` (``runtime.routes``) is who hears which event besides the subscribers.
``build_tree`` turns the three into actors and a ``Supervisor``; ``Fanout`` delivers
events along ``ROUTES``.

    root supervisor (rest_for_one; restart_intensity in restart_period)
    ├── store       store writer: the one connection that writes; group commit
    ├── cluster     this node's lease (join, renew), rescue of expired nodes, shares
    ├── router      inbox expiry, announce deliveries to sinks
    ├── dispatcher  ready queue, admission, claims, finalization (+ its run supervisor)
    ├── scheduler   cron / every / at slots become dispatches
    ├── approvals   approval deadlines: on_timeout applied; new requests to the router
    ├── health      heartbeat flush and stale runs (Tick), gateway probes, status rows
    ├── groups      task-group deadlines: silent members die, summaries are queued
    ├── ingest      wake-ups from other processes (unix datagram socket; PostgreSQL: NOTIFY)
    ├── spool       files in the spool directory become dispatches (when [spool] is set)
    ├── producers   enqueues from other processes (unix stream socket), group-committed
    ├── pruner      retention passes in bounded batches, key expiry, WAL checkpoint
    ├── backup      scheduled backups ([backup] every), rotated to the newest keep
    ├── nats        the event stream published to NATS ([http.nats] with [http] listen)
    └── http        REST API, worker leases, events, metrics, dashboard ([http] listen)

A mailbox is a bound, not an allocation (anyio buffers what is queued, nothing more):
a sender that awaits ``send`` waits for room, one that ``tell``s gets ``MailboxFull``.
Each capacity below is chosen from the senders of that inbox and what a full inbox
costs them.

The module is longer than most because it is mostly data (the three tables, each row
with its reason) beside the one function that turns them into actors: the wiring is
meant to be read in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from shepherd.actors.approvals import ApprovalsConfig, ApprovalTimer
from shepherd.actors.backup import BackupActor, backup_files
from shepherd.actors.cluster import ClusterActor, Membership
from shepherd.actors.dispatcher import Dispatcher, DispatcherConfig
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.gateway import HttpClient
from shepherd.actors.executors.host import Host
from shepherd.actors.groups import GroupTimers, StopGroups
from shepherd.actors.health import HealthMonitor
from shepherd.actors.ingest import Ingest
from shepherd.actors.ingest_stream import IngestStream, StreamProducer
from shepherd.actors.liveness import Liveness
from shepherd.actors.messages import (
    Drain,
    Event,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Reply
from shepherd.actors.primitives.supervisor import ActorEvent, ChildSpec, Restart, Supervisor
from shepherd.actors.pruner import Pruner
from shepherd.actors.pruner import Stop as StopPruner
from shepherd.actors.router import Router, SinkFn
from shepherd.actors.router import Stop as StopRouter
from shepherd.actors.router.delivery import dead_letter_alert
from shepherd.actors.scheduler import Scheduler, SchedulerConfig
from shepherd.actors.writer import StoreWriter
from shepherd.runtime.config import Config
from shepherd.runtime.http.config import parse_listen
from shepherd.runtime.inboxes import INBOXES, ActorName, Inboxes, capacity
from shepherd.runtime.routes import ROUTES, Fanout
from shepherd.store.errors import MailboxClosed, MailboxFull
from shepherd.store.factory import is_postgres
from shepherd.store.protocol import Store

__all__ = [
    "INBOXES",
    "ROUTES",
    "STRATEGY",
    "TREE",
    "Fanout",
    "Inboxes",
    "build_tree",
    "capacity",
]

log = logging.getLogger("shepherd")


class Child(msgspec.Struct, frozen=True):
    """One child of the root: ``shutdown`` seconds of grace on stop (plus the runtime's
    ``shutdown_grace`` when ``plus_grace``), then it is cancelled."""

    name: ActorName
    shutdown: float
    why: str
    restart: Restart = "permanent"
    plus_grace: bool = False


STRATEGY: Literal["rest_for_one"] = "rest_for_one"

# fmt: off
TREE: tuple[Child, ...] = (
    Child("store", 5.0,
          "first: every other actor writes through it, so it starts before them and"
          " stops after them, answering their last writes"),
    Child("cluster", 5.0,
          "right after the store: the node joins (and rescues the nodes that died while"
          " no one was up) before the dispatcher recovers and claims with its epoch; it"
          " stops after them, leaving the cluster once their last outcomes are written"),
    Child("router", 5.0,
          "before the dispatcher: on shutdown (last-first) the router outlives the drain"
          " and announces its outcomes; the price is that a router crash restarts the"
          " dispatcher too (rest_for_one)"),
    Child("dispatcher", 10.0, plus_grace=True, why=(
          "its stop drains: running runs get shutdown_grace to finish, then are"
          " cancelled and their outcomes written; the 10 s cover those writes")),
    Child("scheduler", 1.0,
          "after the dispatcher, which it tells about the dispatches it commits"),
    Child("approvals", 1.0,
          "after the dispatcher, which it tells about the dispatches approved at their"
          " timeout (or repaired at start), and the router, which it tells to load the"
          " request deliveries; before ingest, whose catch-up Poke it hears"),
    Child("health", 3.0,
          "after the dispatcher, which it ticks; its stop writes a last status snapshot"),
    Child("groups", 1.0,
          "after the router, which it tells to load a summary delivery; before ingest,"
          " whose catch-up Poke makes it re-read groups changed while it loaded"),
    Child("ingest", 1.0,
          "after the dispatcher and the scheduler have loaded the store: once its socket"
          " is bound it pokes both to read what was committed meanwhile"),
    Child("spool", 1.0,
          "after the dispatcher, which its enqueues tell; only with [spool]. Its stop"
          " ends the watch; a commit cut short is redone at the next start (a file is"
          " removed only after its commit)"),
    Child("producers", 1.0,
          "after the dispatcher, which its enqueues tell (and after ingest: both serve"
          " other processes). Its stop closes the socket; a request not yet committed"
          " gets no answer, so its producer holds no id for it"),
    Child("pruner", 3.0,
          "housekeeping; a pass stops after its current batch"),
    Child("backup", 1.0,
          "last: it only reads (a connection of its own); a stop during a copy stops"
          " waiting for it after 1 s, and the copy, on its own thread, still ends whole"
          " or not at all"),
    Child("nats", 1.0, "only with [http.nats] and [http] listen (it reads the API's"
          " event hub); before http, so it hears what the first requests cause"),
    Child("http", 1.0, plus_grace=True, why=(
          "last, only with [http] listen: it starts once everything it serves is up, and"
          " stops first (last-first), so in-flight requests finish (within the grace)"
          " while the actors they call still run")),
)
# fmt: on


# -- building it ---------------------------------------------------------------------


def build_tree(
    cfg: Config,
    *,
    instance: str,
    store: Store,
    clock: Clock,
    inboxes: Inboxes,
    executors: dict[str, Executor],
    emit: Callable[[Event], None],
    host: Host,
    snapshot: Callable[[], dict[str, Any]],
    sinks: dict[str, SinkFn],
    http: HttpClient,
    on_event: Callable[[ActorEvent], None],
    producer: StreamProducer,
    asgi: Any = None,
    wants: Callable[[type], bool] = lambda kind: False,
    membership: Membership | None = None,
    forget_jobs: Callable[[], None] | None = None,
) -> tuple[Supervisor, dict[str, Any]]:
    """The actors of ``TREE`` and the root supervisor that runs them. A spool directory
    that cannot be used raises here, before anything starts (``prepare_dirs``)."""
    writer = inboxes.store.address()
    dispatcher = inboxes.dispatcher.address()
    scheduler = inboxes.scheduler.address()
    router_addr = inboxes.router.address()
    pruner_addr = inboxes.pruner.address()
    groups_addr = inboxes.groups.address()
    approvals_addr = inboxes.approvals.address()
    grace = float(cfg.shutdown_grace)
    node = membership if membership is not None else Membership(instance)
    # the local sockets (wake datagrams, the producers' stream) are named after the
    # database; on PostgreSQL several nodes may share a host, so each names its own (a
    # client there writes to the database, whose NOTIFY wakes every node)
    local_key = f"{cfg.database}#{node.node}" if is_postgres(cfg.database) else cfg.database
    health = HealthMonitor(
        instance=instance,
        clock=clock,
        dispatcher=dispatcher,
        writer=writer,
        executors=executors,
        snapshot=snapshot,
        interval=float(cfg.health_interval),
        liveness=Liveness(
            cfg.agents, store=store, writer=writer, dispatcher=dispatcher, clock=clock
        ),
        check_files=store.check_files,
    )
    store_writer = StoreWriter(store, inboxes.store, clock=clock)
    actors: dict[str, Any] = {
        "store": store_writer,
        "cluster": ClusterActor(
            cfg.cluster,
            membership=node,
            store=store,
            clock=clock,
            dispatcher=dispatcher,
            alert=dead_letter_alert(cfg.delivery),
            scheduler=scheduler,
        ),
        "router": Router(
            cfg.delivery,
            store=store,
            writer=writer,
            mailbox=inboxes.router,
            clock=clock,
            sinks=sinks,
            http=http,
            gateway=cfg.gateway,
        ),
        "dispatcher": Dispatcher(
            DispatcherConfig(
                instance=instance,
                concurrency=cfg.concurrency,
                cluster_concurrency=cfg.cluster.concurrency,
                pool_limits=dict(cfg.pools),
                rates=cfg.rates.buckets(),
                data_dir=cfg.artifacts_dir,
                breaker_fail_max=cfg.breaker_fail_max,
                breaker_reset=float(cfg.breaker_reset),
                dead_letter=dead_letter_alert(cfg.delivery),
                agent_owners=dict(cfg.agents.owner_filter),
                degraded_after=cfg.agents.degraded_after,
            ),
            store=store,
            writer=writer,
            mailbox=inboxes.dispatcher,
            executors=executors,
            clock=clock,
            emit=emit,
            host=host,
            wants=wants,
            membership=node,
            commit_now=store_writer.commit_now,
        ),
        "scheduler": Scheduler(
            SchedulerConfig(instance=instance, lead=float(cfg.schedule_lead)),
            store=store,
            writer=writer,
            mailbox=inboxes.scheduler,
            dispatcher=dispatcher,
            clock=clock,
            emit=emit,
            approvals=approvals_addr,
        ),
        "approvals": ApprovalTimer(
            ApprovalsConfig(instance=instance),
            store=store,
            writer=writer,
            mailbox=inboxes.approvals,
            dispatcher=dispatcher,
            router=router_addr,
            clock=clock,
            emit=emit,
        ),
        "health": health,
        "groups": GroupTimers(
            store=store,
            writer=writer,
            mailbox=inboxes.groups,
            router=router_addr,
            clock=clock,
            max_attempts=cfg.delivery.max_attempts,
        ),
        "ingest": Ingest(
            local_key,
            dispatcher,
            scheduler,
            groups=groups_addr,
            approvals=approvals_addr,
            store=store,
            forget_jobs=forget_jobs,
        ),
        "pruner": Pruner(
            cfg.retention,
            writer=writer,
            mailbox=inboxes.pruner,
            clock=clock,
            store=store,
            checkpoint_every=float(cfg.health_interval),
        ),
        "backup": BackupActor(
            cfg.backup,
            store=store,
            clock=clock,
            directory=cfg.backup_dir,
            stem=backup_files(cfg.database)[0],
            suffix=backup_files(cfg.database)[1],
        ),
    }
    actors["producers"] = IngestStream(local_key, producer)
    if cfg.spool is not None:
        from shepherd.actors.spool.actor import SpoolIngest, prepare_dirs  # only with [spool]

        prepare_dirs(cfg.spool.dir)
        actors["spool"] = SpoolIngest(cfg.spool, producer=producer, store=store, clock=clock)
    if asgi is not None and cfg.http.listen:
        from shepherd.actors.http import HttpServer  # only when serving: uvicorn
        from shepherd.runtime.http import events as http_events

        if cfg.http.nats is not None:  # the API's event hub, published to NATS
            actors["nats"] = http_events.nats_publisher(asgi, cfg.http.nats, clock)
        bind_host, bind_port = parse_listen(cfg.http.listen)
        actors["http"] = HttpServer(asgi, bind_host, bind_port, grace=grace)
        actors["http"].bind()  # a taken port fails the start here, not in a restart loop
    stops: dict[str, Callable[[], None]] = {
        "router": lambda: _tell(router_addr, StopRouter()),
        "dispatcher": lambda: dispatcher.tell(Drain(grace, Reply())),
        "health": health.stop,
        "cluster": actors["cluster"].stop,
        "pruner": lambda: _tell(pruner_addr, StopPruner()),
        "groups": lambda: _tell(groups_addr, StopGroups()),
        "backup": actors["backup"].stop,
    }
    if "spool" in actors:
        stops["spool"] = actors["spool"].stop
    if "http" in actors:
        stops["http"] = http_events.closing_streams(asgi, actors["http"].stop)
    children = [
        ChildSpec(
            name=child.name,
            start=actors[child.name].run,
            restart=child.restart,
            shutdown=child.shutdown + (grace if child.plus_grace else 0.0),
            stop=stops.get(child.name),
        )
        for child in TREE
        if child.name in actors
    ]
    root = Supervisor(
        "root",
        children,
        strategy=STRATEGY,
        intensity=cfg.restart_intensity,
        period=float(cfg.restart_period),
        clock=clock,
        on_event=on_event,
    )
    return root, actors


def _tell(address: Address[Any], msg: Any) -> None:
    try:  # a full inbox: the supervisor cancels the actor after its shutdown grace
        address.tell(msg)
    except (MailboxFull, MailboxClosed):
        pass
