"""The cluster actor: this runtime as a node of its database (``store.cluster``).

Role: join the database as a node at start (before the dispatcher recovers and claims:
it sits right after the store writer in the tree), then every ``lease / 3`` seconds (a
timer on the injected clock, so a test's fake clock paces the beats)
1. renew the node's lease; the answer gives its rank among the live nodes, hence its
   share of every cluster-wide limit (``Membership.share``), told to the dispatcher when
   it changes (``NodeChanged``);
2. rescue the nodes whose lease ran out (``Store.rescue_nodes``: their running runs get
   their delivery guarantee, their epochs are bumped so their late writes are refused).
When a renew finds the node *fenced* (it was paused past its lease and rescued by
another node) the dispatcher is told to cancel its in-flight runs (their rows were
rescued; their outcomes would be refused anyway) and the node joins again with a new
epoch, then carries on. A node that got no renew through for a whole lease (cut off
from the database, or paused and resumed) cancels its runs at once, before it even asks
(they may be replayed elsewhere by now): a cancel for ``fenced`` requeues an
at-least-once dispatch when no rescue did, and is refused when one did. A stop leaves
the cluster (``leave_node``), so no rescue is due.

The server counts a lease in real time, so the actor measures the time since its last
renew on real monotonic time (``time.monotonic``), never on the injected clock: a test
that moves a fake clock past the lease has not let the lease run out, and a process
paused past it has, whatever its clock says.

A rescue ends the process groups that the rescued runs left on this host before their
guarantee applies (``recovery.end_orphaned_groups``, polling on real time: the store
call is in flight meanwhile), so an at-least-once replay never runs beside the body of a
dead or paused node of the same host. Groups on other hosts are out of reach: a paused
node ends its own when it finds itself fenced; a run still ``running`` when a node of
its host starts is ended by that start recovery; what a killed node's group left
running on its host after another host recovered the run is nobody's to end.

The store calls go straight to the store (``Store.join_node`` etc.), not through the
store writer's group commit, and on PostgreSQL over a connection of their own: a slow
commit or a busy pool never delays a renew. A failed renew is logged and tried again at
the next beat (the lease is three beats long). On SQLite the database is a cluster of
one: the node is always alive, epoch 0, and a rescue finds nothing.
Inbox: none (timer-driven). Sends: ``NodeChanged`` and ``Poke`` (replays queued) to
the dispatcher, ``Poke`` to the scheduler after a rescue (the dead node may have led it:
its lock is free now). Restart type: permanent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from shepherd.actors.cluster_config import ClusterConfig
from shepherd.actors.dispatcher.recovery import end_orphaned_groups, this_host
from shepherd.actors.messages import DispatcherMsg, NodeChanged, Poke, SchedulerMsg
from shepherd.actors.primitives.clock import Clock, RealClock
from shepherd.actors.primitives.mailbox import Address
from shepherd.store.cluster import NodeLease, share
from shepherd.store.errors import MailboxFull, StoreError
from shepherd.store.ops import DeadLetterAlert
from shepherd.store.protocol import OrphanedProcess, Store

__all__ = ["ClusterActor", "ClusterConfig", "Membership"]

log = logging.getLogger("shepherd.cluster")


class Membership:
    """This runtime's standing as a node, shared by the cluster actor (which renews it)
    and the dispatcher (which stamps ``epoch`` on its claims and outcomes and takes its
    ``share`` of every cluster-wide limit)."""

    __slots__ = ("count", "epoch", "fenced", "joins", "node", "rank", "single")

    def __init__(self, node: str) -> None:
        self.node = node
        self.epoch = 0  # 0: no fencing (not joined yet, or a database of one runtime)
        self.rank = 0
        self.count = 1
        self.single = True
        self.fenced = 0  # times this node found itself rescued by another
        self.joins = 0

    def update(self, lease: NodeLease) -> bool:
        """Take ``lease``'s standing; whether the shares changed."""
        before = (self.rank, self.count, self.single)
        self.epoch, self.rank, self.count = lease.epoch, lease.rank, lease.count
        self.single = lease.single
        return before != (self.rank, self.count, self.single)

    def share(self, limit: int) -> int:
        """This node's part of a cluster-wide ``limit`` (all of it in a cluster of one)."""
        return limit if self.single else share(limit, self.count, self.rank)

    def recovery_scope(self) -> str | None:
        """Whose runs crash recovery at start may take: None (every run: the database
        has one runtime), else this node's own (its previous incarnation's)."""
        return None if self.single else self.node

    def statistics(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "epoch": self.epoch,
            "rank": self.rank,
            "nodes": self.count,
            "fenced": self.fenced,
            "joins": self.joins,
        }


def default_node_name() -> str:
    """``host:pid:<8 hex>``: unique per process, so two runtimes never share a name."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def _end_groups(rows: list[OrphanedProcess]) -> dict[int, str]:
    """The rescue's ``end_groups``: the rescued runs' groups on this host ended, polling on real
    time (a fake clock does not move while the store call is in flight)."""
    return await end_orphaned_groups(RealClock(), rows)


class ClusterActor:
    def __init__(
        self,
        cfg: ClusterConfig,
        *,
        membership: Membership,
        store: Store,
        clock: Clock,
        dispatcher: Address[DispatcherMsg],
        alert: DeadLetterAlert | None = None,
        on_rescue: Callable[[str, list[tuple[int, int, str]]], None] | None = None,
        scheduler: Address[SchedulerMsg] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scheduler = scheduler  # told after a rescue: the dead node may have led it
        self._cfg = cfg
        self.membership = membership
        self._store = store
        self._clock = clock
        self._dispatcher = dispatcher
        self._alert = alert
        self._on_rescue = on_rescue
        self._monotonic = monotonic  # real time: the lease's, as the server counts it
        self._stop = anyio.Event()
        self._untold: NodeChanged | None = None  # not told for a full inbox: next beat
        self._renewed = monotonic()  # when the last renew that succeeded was sent
        self.beats = 0
        self.rescued = 0  # nodes this one rescued
        self.last_error: str | None = None

    @property
    def interval(self) -> float:
        return float(self._cfg.lease) / 3.0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._stop = anyio.Event()
        # before the dispatcher starts: its claims carry the epoch, and its recovery takes
        # the runs of nodes no longer alive; expired ones are rescued at the first beat
        await self._join()
        task_status.started()
        while not self._stop.is_set():
            with anyio.CancelScope() as wait:
                self._clock.cancel_at(wait, self._clock.now() + self.interval)
                await self._stop.wait()
            if not self._stop.is_set():
                await self.beat()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
            try:
                await self._store.leave_node(self.membership.node, self.membership.epoch)
            except StoreError as exc:
                log.warning("node %s could not leave: %s", self.membership.node, exc)

    def stop(self) -> None:
        """Graceful stop (the supervisor's stop hook): leave the cluster and return."""
        self._stop.set()

    async def _join(self) -> None:
        m = self.membership
        sent = self._monotonic()
        lease = await self._store.join_node(
            m.node, lease=float(self._cfg.lease), host=this_host(), pid=os.getpid()
        )
        m.joins += 1
        m.update(lease)
        self._renewed = sent
        if not lease.single:
            log.info("node %s joined, epoch %d (rank %d of %d)", m.node, m.epoch, m.rank, m.count)

    async def beat(self) -> None:
        """One renew and one rescue pass (a store error is logged; the next beat retries)."""
        self.beats += 1
        m = self.membership
        self._flush_untold()
        sent = self._monotonic()
        if not m.single and sent - self._renewed > float(self._cfg.lease):
            # no renew got through for a whole lease (cut off, or paused): a rescue may be
            # replaying these runs elsewhere now, so they stop here before anything else
            log.error(
                "node %s: no lease renew for %.1fs: cancelling its runs",
                m.node,
                sent - self._renewed,
            )
            self._tell(NodeChanged(fenced=True))
        try:
            with anyio.fail_after(self.interval):  # a renew stuck on the server: next beat
                lease = await self._store.renew_node(m.node, m.epoch, lease=float(self._cfg.lease))
            if not lease.fenced:
                self._renewed = sent
            if lease.fenced:
                m.fenced += 1
                log.error(
                    "node %s was declared dead (epoch %d is stale): its runs were rescued"
                    " elsewhere; cancelling them here and joining again",
                    m.node,
                    m.epoch,
                )
                self._tell(NodeChanged(fenced=True))
                await self._join()
                self._tell(NodeChanged())
            elif m.update(lease):
                self._tell(NodeChanged())
            await self._rescue()
        except (StoreError, TimeoutError) as exc:
            self.last_error = str(exc) or "timed out"
            log.error("node %s: lease renew or rescue failed: %s", m.node, self.last_error)

    async def _rescue(self) -> None:
        m = self.membership
        if m.single:
            return
        # the replays' origin is no node's name, so every node reads them (the rescuer too:
        # a dispatcher skips what its own node queued, which it holds already)
        origin = f"rescued-by:{m.node}"
        found = await self._store.rescue_nodes(
            rescuer=m.node,
            origin=origin,
            alert=self._alert,
            host=this_host(),
            end_groups=_end_groups,
        )
        for r in found:
            self.rescued += 1
            log.warning(
                "node %s rescued %s (now epoch %d): %d running runs given their guarantee",
                m.node,
                r.node,
                r.epoch,
                len(r.runs),
            )
            for run_id, dispatch_id, action in r.runs:
                log.warning(
                    "run %s of dispatch %s (node %s): %s", run_id, dispatch_id, r.node, action
                )
            if self._on_rescue is not None:
                self._on_rescue(r.node, r.runs)
        if any(r.runs for r in found):
            self._tell(Poke(dispatches=True))  # the replays are queued: read them
        if found and self._scheduler is not None:  # its lock is free: ask for it now
            try:
                self._scheduler.tell(Poke())
            except MailboxFull:
                pass

    def _tell(self, msg: DispatcherMsg) -> None:
        try:
            self._dispatcher.tell(msg)
        except MailboxFull:
            log.warning("dispatcher inbox full; %s told at the next beat", type(msg).__name__)
            if isinstance(msg, NodeChanged):
                fenced = msg.fenced or (self._untold is not None and self._untold.fenced)
                self._untold = NodeChanged(fenced=fenced)

    def _flush_untold(self) -> None:
        msg, self._untold = self._untold, None
        if msg is not None:
            self._tell(msg)

    def statistics(self) -> dict[str, Any]:
        return {
            **self.membership.statistics(),
            "beats": self.beats,
            "rescued": self.rescued,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        m = self.membership
        return f"<ClusterActor {m.node} epoch={m.epoch} rank={m.rank}/{m.count}>"
