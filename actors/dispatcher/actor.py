"""The dispatcher actor: the shell that holds the dispatch collaborators and performs
what they decide.

Role: keep the head of the queue in memory, a bounded window refilled in index order as
it drains (``ready.ReadyQueue``, ``loader.Loader.refill``), admit what may start
under the global cap and the admission rules (``admission.admit``, gated by the
executors' circuit breakers, ``breakers.BreakerTable``), claim runs and start one run
actor per attempt (``launcher.Launcher``, which owns the run supervisor; ``runs.RunTable``
tracks the runs), and turn each outcome into done / retry / dead letter (``finalize``).
Each loop pass handles every message already waiting and commits what it decided as one
group of writes (``commit.Batch``), so a burst of N dispatches costs a few commits, not N.
Inbox: ``DispatcherMsg`` (``actors.messages``). Sends: write ops to the store writer
(ask), ``Event``s to the sink, ``RunFinished`` to itself (a run actor that died).
Restart type: permanent; on (re)start it recovers orphaned runs (``recovery``: their
process groups are killed first) and reloads jobs and the queue from the store
(``loader.Loader``, which also reads what other processes committed). Timers: one, the
earliest not-before on the delayed heap, folded into the receive (``receive_by``).
New dispatches it takes in are announced as one ``DispatchQueued`` per batch, built only
when ``wants`` says someone listens. The module is long because every message the
dispatcher hears is handled here, in one ``match``.

A pass that needs another (keys handed on, outcomes decided after a commit) sets a flag,
not a message to itself: the next receive does not block, and a full mailbox is no matter.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping
from typing import Any, assert_never

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from shepherd.actors.cluster import Membership
from shepherd.actors.dispatcher.admission import Admission, admit
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.commit import Batch, cancel, flush
from shepherd.actors.dispatcher.config import COUNTERS, DispatcherConfig, window_size
from shepherd.actors.dispatcher.finalize import held_cancelled, queued_event
from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.actors.dispatcher.launcher import Launcher
from shepherd.actors.dispatcher.loader import Loader
from shepherd.actors.dispatcher.ready import ReadyQueue
from shepherd.actors.dispatcher.wake import wake_agent
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.host import Host
from shepherd.actors.messages import (
    AgentWoken,
    Cancel,
    DispatcherMsg,
    DispatchQueued,
    Drain,
    Drained,
    Enqueued,
    Event,
    JobsChanged,
    NodeChanged,
    Poke,
    Probe,
    Quiesce,
    RunClaimed,
    RunFinished,
    Tick,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Mailbox, Reply, receive_by, serving
from shepherd.actors.writer import CommitNow, StoreMsg
from shepherd.store.errors import MailboxClosed, MailboxFull
from shepherd.store.protocol import Store

__all__ = ["Dispatcher", "DispatcherConfig"]

# claims lost to other nodes in one pass from which this node keeps to its lane of the
# queue (``loader.Loader.compete``): a pass of one or two lost at a trickle does not
LANE_AFTER = 4
# seconds after a pass lost claims until the queue's head is read again (``_recheck``)
RECHECK_AFTER = 1.0


class Dispatcher:
    def __init__(
        self,
        cfg: DispatcherConfig,
        *,
        store: Store,
        writer: Address[StoreMsg],
        mailbox: Mailbox[DispatcherMsg],
        executors: Mapping[str, Executor],
        clock: Clock,
        emit: Callable[[Event], None],
        host: Host,
        wants: Callable[[type], bool] = lambda kind: False,
        membership: Membership | None = None,
        commit_now: CommitNow | None = None,
    ) -> None:
        self._cfg, self._store, self._writer = cfg, store, writer
        self._commit_now = commit_now  # the writer's idle path for a pass's group
        # this node's epoch and shares (actors.cluster); a cluster of one by default
        self._membership = membership if membership is not None else Membership(cfg.instance)
        self._mailbox, self._clock, self._emit = mailbox, clock, emit
        self._wants = wants
        self.ready = False  # recovery and the first load are done
        self._rechecking = False  # a ``_recheck`` is waiting
        self._rng = random.Random()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._launcher = Launcher(
            executors,
            writer,
            clock,
            emit=emit,
            finish=self._finish,
            claim=self._claimed,
            counters=self.counters,
            host=host,
            concurrency=cfg.concurrency,
            data_dir=cfg.data_dir,
            wants=wants,
        )
        self._reset()

    def _reset(self) -> None:
        cfg = self._cfg
        self._jobs = JobTable()  # refreshed in place: the batch reads the same table
        self._queue = ReadyQueue(cfg.window or window_size(cfg.concurrency))
        self._runs = self._launcher.reset()
        self._admission = Admission(cfg.pool_limits, rates=cfg.rates)
        self._admission.shares(self._membership)
        self._admission.agents.configure(cfg.agent_owners, cfg.degraded_after)
        self._breakers = BreakerTable(fail_max=cfg.breaker_fail_max, reset=cfg.breaker_reset)
        self.counters.update(dict.fromkeys(COUNTERS, 0))
        self._batch = Batch(
            instance=cfg.instance,
            jobs=self._jobs,
            queue=self._queue,
            runs=self._runs,
            admission=self._admission,
            breakers=self._breakers,
            counters=self.counters,
            clock=self._clock,
            emit=self._emit,
            wants=self._wants,
            wake=self._wake,
            start=self._launcher.start,
            rng=self._rng,
            alert=cfg.dead_letter,
            epoch=lambda: self._membership.epoch,
        )
        self._loader = Loader(
            store=self._store,
            instance=cfg.instance,
            jobs=self._jobs,
            queue=self._queue,
            add=self._batch.add,
            counters=self.counters,
            alert=cfg.dead_letter,
            agents=self._admission.agents,
            controls=self._admission.controls,
            node=self._membership.recovery_scope,
            journals=cfg.data_dir,
        )
        self._again = True  # the first pass admits what was loaded from the store
        self._draining = self._drained = False
        self._holding = False  # ``hold``: the runtime stops, nothing new starts
        self._drain_reply: Reply[int] | None = None
        self._drained_count = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.ready = False
        self._reset()
        await self._loader.start(self._writer, self._clock)
        async with serving(self._mailbox) as (tg, me):
            await tg.start(self._launcher.run, me)
            self._me = me  # wake tasks report to it (``wake.py``)
            self.ready = True
            task_status.started()
            try:
                await self._loop(tg)
            finally:
                self.ready = False

    async def _loop(self, tg: TaskGroup) -> None:
        while True:
            try:
                batch = await self._receive()
            except anyio.EndOfStream:
                return
            self.counters["loops"] += 1
            for msg in batch:
                await self._handle(msg, tg)
            for dispatch_id, why in self._loader.withdrawn:  # their end, heard as any other
                self._batch.cancelled(dispatch_id, "cancelled", self._clock.wall(), why)
            self._loader.withdrawn.clear()
            if self._loader.pending:
                self._loader.fresh = [] if self._wants(DispatchQueued) else None
                for dispatch_id, why in await self._loader.reload():
                    self._launcher.cancel(dispatch_id, why)
                if self._loader.fresh:  # committed by another process
                    self._emit(
                        queued_event(self._loader.fresh, self._jobs.name, self._clock.wall())
                    )
                self._loader.fresh = None
            now = self._clock.wall()
            self._queue.promote(now)
            await self._loader.refill(now)  # draining too: its ``later`` cursor is a timer
            if not self._draining and not self._holding:
                self._admit(now)
                for w in self._admission.agents.take_wakes():
                    tg.start_soon(wake_agent, w, self._me, self._clock)
            lost = self.counters["lost"]
            await flush(self._batch, self._writer, self._clock, now, self._commit_now)
            if self.counters["lost"] - lost >= LANE_AFTER and not self._membership.single:
                self._loader.compete(self._membership.rank, self._membership.count)
            if self.counters["lost"] > lost and not self._rechecking:
                self._rechecking = True
                tg.start_soon(self._recheck, self._clock.now() + RECHECK_AFTER)
            self._admission.controls.idle(len(self._runs))  # Runtime.drain's waiters
            if self._drained and not self._runs and not self._batch.finished:
                if self._drain_reply is not None:
                    self._drain_reply.set(self._drained_count)
                return

    async def _receive(self) -> list[DispatcherMsg]:
        """What is waiting; blocks (up to the next not-before) unless a wake is pending."""
        if self._again:
            self._again = False
            await checkpoint()
            try:
                first = self._mailbox.receive_nowait()
            except anyio.WouldBlock:
                return []
        else:
            msg = await receive_by(self._mailbox, self._clock, self._queue.next_wake())
            if msg is None:
                return []
            first = msg
        return self._mailbox.drain(first, self._cfg.max_batch)

    async def _handle(self, msg: DispatcherMsg, tg: TaskGroup) -> None:
        match msg:
            case Enqueued(entries):
                for e in entries:
                    if self._loader.in_lane(e):  # another node's lane: left to the store
                        self._batch.add(e)
                if entries and self._wants(DispatchQueued):
                    self._emit(queued_event(entries, self._jobs.name, self._clock.wall()))
            case RunFinished():
                self._batch.finished.append(msg)
            case RunClaimed():
                self._claimed(msg)
            case Cancel(dispatch_id, reply):
                held = None  # awaiting its approval, or queued past the window: its row
                if dispatch_id not in self._queue:
                    row = await self._store.dispatch(dispatch_id)
                    waiting = row is not None and row.status in ("awaiting_approval", "queued")
                    held = row if waiting else None
                status = await cancel(
                    self._batch, self._launcher, self._writer, self._clock, dispatch_id
                )
                if held is not None and status == "cancelled":  # its end, heard as any other
                    self._emit(held_cancelled(held, self._clock.wall()))
                reply.set(status)
            case Poke() | Quiesce():  # Quiesce: read the pauses, answer once idle
                self._loader.note(msg)
            case JobsChanged(ids, withdrawn):
                await self._loader.jobs(ids, withdrawn=withdrawn)
            case Drain(grace, reply):
                self._draining = True
                self._drain_reply = reply
                self._launcher.stop_admitting()
                tg.start_soon(self._launcher.drain, grace)
            case Drained(cancelled):
                self._drained = True
                self._drained_count = cancelled
            case Tick():
                await self._launcher.tick(self._jobs, self._cfg.stale_margin)
            case AgentWoken(agent_id, ok, error):
                self._batch.hand_on(self._admission.agents.woken(agent_id, ok, error))
            case Probe(executor, healthy):
                self._breakers.on_probe(executor, healthy, self._clock.wall())
            case NodeChanged(fenced=fenced):
                if fenced:  # rescued elsewhere: these runs are no longer this node's
                    for r in list(self._runs):
                        self._launcher.cancel(r.entry.id, "fenced")
                self._batch.hand_on(self._admission.shares(self._membership))
                self._loader.relane(self._membership.rank, self._membership.count)
            case _:
                assert_never(msg)

    async def _recheck(self, at: float) -> None:
        """A claim lost to another node drops its dispatch from this node's window, as
        the other node has it. But a node whose claim is refused (its epoch fenced) or
        rolls back held the row locked for a moment, and every node that skipped it
        dropped it too: a second later the head of the queue is read again, so a row
        still queued is held again (at most one read a second, only after losses)."""
        await self._clock.sleep_until(at)
        self._rechecking = False
        self._queue.rewind = True
        with contextlib.suppress(MailboxFull, MailboxClosed):
            self._me.tell(Poke())

    def agent_room(self, agent_id: str) -> bool:
        """Whether ``agent_id`` may take one more run by claiming it (the lease board
        asks): not a registered agent, or one with a free slot (below its
        ``max_concurrent``, and not degraded, draining or offline)."""
        slot = self._admission.agents.get(agent_id)
        return slot is None or slot.free > 0

    def hold(self) -> None:
        """The runtime stops (its Drain follows): admit nothing more from now on. Called
        by ``Runtime`` before it closes the lease board, whose closing sends every
        unclaimed external run back to the queue, which the next pass would otherwise
        admit again at once, and again, until the Drain came."""
        self._holding = True

    def _wake(self) -> None:
        """Another pass is needed: the next receive does not block."""
        self._again = True

    def _finish(self, msg: RunFinished) -> None:
        self._batch.finished.append(msg)

    def _claimed(self, msg: RunClaimed) -> None:
        self._batch.claimed(msg)

    def _admit(self, now: float) -> None:
        free = self._launcher.free - len(self._batch.claims)
        if self._cfg.cluster_concurrency:  # this node's share of the cluster-wide cap
            cap = self._membership.share(self._cfg.cluster_concurrency)
            free = min(free, cap - len(self._runs) - len(self._batch.claims))
        if free <= 0 or not self._queue.has_ready:
            return
        a = admit(self._queue, self._jobs, self._admission, self._breakers, free, now)
        self._batch.claims += a.claims
        self._batch.settles += a.settles
        self.counters["deferred"] += a.deferred
        if a.replaced:
            self._launcher.replaced(a.replaced)
        if a.unparked or self._queue.starved:
            self._wake()  # unparked after this pass's admission, or the window ran dry

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            **self._queue.statistics(),
            "window": self._queue.window,
            "window_complete": self._queue.horizon is None and self._queue.later is None,
            "lane": list(self._loader.lane) if self._loader.lane is not None else None,
            "running": len(self._runs),
            "draining": self._draining,
            "ready": self.ready,
            "recovered": self._loader.recovered,
            "recovery_seconds": round(self._loader.recovery_seconds, 4),
            "cluster": self._membership.statistics(),
            "breakers": self._breakers.statistics(),
            "agents": self._admission.agents.statistics(self._queue.parked),
            **self._admission.controls.statistics(self._clock.wall(), self._queue.parked.count),
            **self.counters,
        }

    def __repr__(self) -> str:
        return (
            f"<Dispatcher queued={len(self._queue)} running={len(self._runs)} "
            f"admitted={self.counters['admitted']}>"
        )
