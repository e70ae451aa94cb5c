"""The loader: what the dispatcher reads from the store into its tables.

- ``start``: on (re)start, orphaned runs are recovered first (``recovery``: their
  process groups are killed, then their guarantee applied), then every job and the
  head of the queue are loaded; it keeps how many it recovered and how long that took.
- ``refill(now)``: the window of the queue's head (``ready.ReadyQueue``), read on from
  its cursors in index order (``Store.queued_ready`` / ``queued_later``): the future
  rows past ``later`` once the clock reaches it (one page; when more came due at once,
  the ready side starts again from the head, since a due one may sort ahead of the
  horizon, and ``later`` moves to now), then the due rows past ``horizon``
  when the ready heap ran below half the window or a pop stopped at the horizon (from
  the head again after a ``rewind``: a key's waiters left to the store are due). Each
  read is a page of the ready index: its cost follows the window, never the backlog.
- ``compete(rank, count)`` / ``relane``: lanes (``store.shared.window``). A pass that
  lost claims to other nodes keeps this node to its lane from then on: the ready
  entries of other lanes leave, refills and arrivals (its own enqueues too) hold only
  its own (critical and high rows: every node's). When its lane runs dry (read to the
  end, nothing ready held), the next refill takes the whole queue again, so no row of
  a busy or dead node's lane waits while another node has slots; a change of the
  cluster's nodes draws the lane again.
- ``jobs(ids)``: all jobs (start, a changed-jobs reload) or only ``ids`` (O(changed));
  the waiters of a changed job go back through admission (a disabled job's fires), and
  its slots held here that the change withdrew in the store go to ``withdrawn``.
- ``queued(after_seq)``: the queued dispatches past the newest seq read so far
  (``seq``), handed to ``add`` (the batch, which skips those with a run in flight).
- ``note(poke)`` / ``reload()``: the union of a pass's ``Poke``s, read once per pass
  however many it held: what other processes committed. ``reload`` returns the
  dispatches whose cancel another process requested while they run here, and those
  whose agent went offline (``agent-offline``), each with the reason.
- ``pauses()``: the pauses in force (at start, and on ``Poke(controls=True)``); the
  waiters of a resumed scope go back to admission.
- ``agents()``: the agent rows written since the newest rev read (all at start) into
  the agent table (``agents.AgentTable``); the keys of agents that gained free slots
  are handed to their waiters.

Owns ``seq`` and the pending ``Poke``; the job table and the ready queue are the
dispatcher's, refreshed in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shepherd.actors.dispatcher.agents import AgentTable
from shepherd.actors.dispatcher.controls import Controls
from shepherd.actors.dispatcher.jobs import JobTable
from shepherd.actors.dispatcher.ready import BOTTOM, ReadyQueue
from shepherd.actors.dispatcher.recovery import recover_orphans
from shepherd.actors.messages import Entry, Poke, Quiesce, entry_from_dispatch
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.writer import StoreMsg
from shepherd.store.models import Dispatch, priority_rank
from shepherd.store.ops import DeadLetterAlert
from shepherd.store.protocol import Store
from shepherd.store.shared.window import LAST_SEQ, Lane, in_lane

__all__ = ["Loader"]

log = logging.getLogger("shepherd.dispatcher")

_WAKE = Poke()
_CONTROLS = Poke(controls=True)


class Loader:
    def __init__(
        self,
        *,
        store: Store,
        instance: str,
        jobs: JobTable,
        queue: ReadyQueue,
        add: Callable[[Entry], None],
        counters: dict[str, int],
        alert: DeadLetterAlert | None = None,
        agents: AgentTable | None = None,
        controls: Controls | None = None,
        node: Callable[[], str | None] = lambda: None,
        journals: str | None = None,
    ) -> None:
        self._node = node  # whose runs recovery takes: None = all (``Membership``)
        self._journals = journals  # where process journals are (``recovery``)
        self._controls = controls if controls is not None else Controls()
        self._agents = agents if agents is not None else AgentTable()
        self._store = store
        self._alert = alert
        self._instance = instance
        self._jobs = jobs
        self._queue = queue
        self._add = add
        self._counters = counters
        self.seq = 0  # the newest seq read from the store
        self.lane: Lane | None = None  # this node's share of the queue; None: all of it
        self.pending = _WAKE  # the union of this pass's Pokes
        self.recovered = 0
        self.recovery_seconds = 0.0
        # a list while the shell wants the dispatches a reload finds (``DispatchQueued``)
        self.fresh: list[Entry] | None = None
        # held slots a job change or the error backoff withdrew (``jobs``), and why
        self.withdrawn: list[tuple[int, str]] = []
        self._clock: Clock | None = None

    async def start(self, writer: Address[StoreMsg], clock: Clock) -> None:
        """Recover the orphaned runs, then load every job and the head of the queue."""
        self._clock = clock
        began = clock.now()
        recovered = await recover_orphans(
            self._store,
            writer,
            clock,
            origin=self._instance,
            alert=self._alert,
            node=self._node(),
            journals=self._journals,
        )
        for run_id, dispatch_id, action in recovered:
            log.warning("run %s of dispatch %s was orphaned: %s", run_id, dispatch_id, action)
        await self.jobs()
        await self.agents()
        await self.pauses()
        now = clock.wall()
        self.seq = await self._store.newest_seq()  # past it: ``queued``; up to it: refills
        self._queue.horizon, self._queue.later = BOTTOM, (now, LAST_SEQ)
        await self.refill(now)
        self.recovered = len(recovered)
        self.recovery_seconds = clock.now() - began
        log.info(
            "dispatcher ready: %d orphaned runs resolved, %d queued held, in %.3fs",
            self.recovered,
            len(self._queue),
            self.recovery_seconds,
        )

    def note(self, poke: Poke | Quiesce) -> None:
        if isinstance(poke, Quiesce):  # Runtime.drain: a pause was written; answer when idle
            self._controls.quiesce(poke.reply)
            poke = _CONTROLS
        self.pending |= poke  # a Poke with no flag only wakes the loop

    async def jobs(self, ids: list[int] | None = None, *, withdrawn: bool = False) -> None:
        """Reload these jobs (None: all). The slots held here of those that changed, or
        of all of them with ``withdrawn`` (the scheduler's backoff withdrew one), are
        looked up: what was withdrawn goes to ``withdrawn``."""
        if ids is None:
            before = self._jobs.replace(await self._store.jobs())
        else:
            before = self._jobs.refresh(ids, await self._store.jobs_by_id(ids))
        self._queue.take_changed(before, self._jobs)
        changed = {j for j, spec in before.items() if self._jobs.get(j) != spec}
        if withdrawn and ids:
            changed.update(ids)
        if changed and self._clock is not None:
            await self._find_withdrawn(changed, self._clock.wall())

    async def _find_withdrawn(self, jobs: set[int], now: float) -> None:
        """The slots of changed ``jobs`` held here, committed ahead, that the change
        withdrew in the store (``SaveJob``, or the backoff's ``RecordSlots``): their ids,
        with the reason the store wrote, go to ``withdrawn``."""
        for e in self._queue.held():
            if e.kind == "schedule" and e.job_id in jobs and e.not_before > now:
                row = await self._store.dispatch(e.id)
                if row is None or row.status == "cancelled":
                    why = row.last_error if row is not None and row.last_error else None
                    self.withdrawn.append((e.id, why or "withdrawn before its slot"))

    async def queued(self, after_seq: int = 0, *, exclude_own: bool = False) -> None:
        """What was committed past ``after_seq``; each kept if it sorts within the
        window (``ReadyQueue.holds``), else left to the refill that reaches it."""
        exclude = self._instance if exclude_own else None
        for d in await self._store.queued_since(after_seq, exclude_origin=exclude):
            self.seq = max(self.seq, d.seq)
            if in_lane(priority_rank(d.priority), d.seq, self.lane):
                entry = await self._take(d)
            else:  # another node's lane: announced here, not held
                if d.job_id not in self._jobs:
                    await self.jobs()
                entry = entry_from_dispatch(d)
            if exclude_own and self.fresh is not None:
                self.fresh.append(entry)

    def in_lane(self, e: Entry) -> bool:
        """Whether ``e`` is of this node's lane (every entry is, with no lane kept)."""
        return in_lane(e.priority, e.seq, self.lane)

    def compete(self, rank: int, count: int) -> None:
        """Claims were lost to other nodes: keep to this node's lane (module docstring)."""
        if count > 1 and self.lane is None:
            self._draw((rank, count))

    def relane(self, rank: int, count: int) -> None:
        """The cluster's nodes changed: a lane kept is drawn again (none for one node)."""
        if self.lane is not None and self.lane != (rank, count):
            self._draw((rank, count) if count > 1 else None)

    def _draw(self, lane: Lane | None) -> None:
        self.lane = lane
        q = self._queue
        if lane is not None:
            q.keep_lane(lane)
        q.horizon, q.starved = BOTTOM, True  # read from the head in the new lane
        self._counters["lanes"] += 1

    async def refill(self, now: float) -> None:
        """Read the window on from its cursors, as far as it needs (module docstring)."""
        q = self._queue
        size = q.window or 1 << 30
        while q.later is not None and now >= q.later[0]:
            rows = await self._store.queued_later(q.later, limit=size)
            q.later = (rows[-1].not_before, rows[-1].seq) if len(rows) >= size else None
            for d in rows:
                await self._take(d)
            if q.later is not None and q.later[0] <= now:
                # more than a page came due at once (a boundary's slots committed ahead):
                # the rest are due rows now, read from the head in ready order as the
                # ready heap drains (as at start), not all of them here
                q.later, q.horizon, q.starved = (now, LAST_SEQ), BOTTOM, True
        rewind, q.rewind = q.rewind, False
        if rewind:  # waiters left to the store are due again: from the head, in order
            q.horizon = BOTTOM
        await self._read_ready(now, size, rewind)
        if self.lane is not None and q.horizon is None and not q.any_ready():
            self._draw(None)  # this lane ran dry: the whole queue again, from the head
            await self._read_ready(now, size, False)

    async def _read_ready(self, now: float, size: int, rewind: bool) -> None:
        """The due rows past the horizon, when the ready heap needs them."""
        q = self._queue
        if q.horizon is None or not (rewind or q.starved or q.ready_size < size // 2):
            return
        after = None if q.horizon == BOTTOM else q.horizon
        # from the head, a whole window: what is held is among it (read again, kept once)
        limit = size if after is None else max(size - q.ready_size, size // 2, 1)
        rows = await self._store.queued_ready(after, now=now, limit=limit, lane=self.lane)
        q.horizon = _key(rows[-1]) if len(rows) >= limit else None
        q.starved = False
        for d in rows:
            await self._take(d)

    async def _take(self, d: Dispatch) -> Entry:
        if d.job_id not in self._jobs:
            await self.jobs()
        entry = entry_from_dispatch(d)
        self._add(entry)
        return entry

    async def reload(self) -> list[tuple[int, str]]:
        """Read what the pending ``Poke``s name; the running dispatches to cancel, why."""
        what, self.pending = self.pending, _WAKE
        self._counters["reloads"] += 1
        if what.jobs:
            await self.jobs()
        if what.dispatches or what.jobs:
            await self.queued(self.seq, exclude_own=True)
        offline = await self.agents() if what.agents else []
        if what.controls:
            await self.pauses()
        if not what.cancels:
            return offline
        requests = await self._store.cancel_requests()
        return [(d, "operator") for d, status in requests if status == "running"] + offline

    async def agents(self) -> list[tuple[int, str]]:
        """Load the agents changed since the newest rev read; the keys of those that
        gained free slots go to their waiters; the runs of those gone offline, to cancel."""
        keys, cancel = self._agents.load(await self._store.agents(since_rev=self._agents.rev))
        for key in keys:
            self._queue.unpark(key)
        return [(d, "agent-offline") for d in cancel]

    async def pauses(self) -> None:
        """Load the pauses in force; every waiter of a scope resumed goes back to
        admission at once (``controls.Controls.load``)."""
        for key in self._controls.load(await self._store.pauses()):
            while self._queue.unpark(key):
                pass


def _key(d: Dispatch) -> tuple[int, float, int]:
    return (priority_rank(d.priority), d.not_before, d.seq)
