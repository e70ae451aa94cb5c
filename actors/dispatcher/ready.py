"""The ready queue: the queued dispatches the dispatcher holds in memory (the module is
long because the window's cursors and the heaps they bound are read together).

Three structures over one table of entries (``dispatch id → Entry``):

- the **ready heap**, ordered by ``(priority rank, not-before, seq)``: what may start now;
- the **delayed heap**, ordered by not-before: future dispatches and deferred ones; its
  head is the dispatcher's only timer (``next_wake``), and ``promote(now)`` moves what
  came due onto the ready heap;
- the **parked waiters** (``Parked``): dispatches waiting FIFO on a key (``job:<id>``
  for an overlap policy, ``pool:<name>`` for a busy pool), put back on the ready heap
  the moment the key is handed on (``unpark``), never polled.

Heap items are plain tuples naming the entry by id and seq; an item whose entry has
left the table or been replaced by a newer seq is skipped when popped (lazy deletion),
so removing an entry is O(1). A plain class, no I/O, no clock: the caller passes
``now``.

**The window.** The store is the queue; the table holds its head, a bounded window
(``window`` entries, the loader refills it: ``loader.Loader.refill``). Two keyset
cursors say what is held: ``horizon`` (priority rank, not-before, seq): every due
queued dispatch up to it is here, none past it is known to be; ``later``
(not-before, seq): every future one up to it is here. None means all of them.
An entry taken in (``add``: an enqueue, a retry, a refill's row) is kept only when it
sorts within its cursor (it sorts ahead of the window's tail: a refill past the cursor
would never find it); past it, the store keeps it for the refill that reaches it.
``pop_ready`` never pops past ``horizon``: it says ``starved`` instead, and the loader
reads on. Parked waiters do not count against the window (a refill reads past them, so
other jobs go on); a key with too many keeps the first window of them (``park``).
``trim`` keeps memory bounded when arrivals ahead of the tail pile up: the tails beyond
the window are dropped and the cursors drawn back to the last kept (never an entry
deferred here, whose not-before differs from its row's: ``_pinned``).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Container, Iterable, Mapping

import msgspec

from shepherd.actors.messages import Entry
from shepherd.store.models import JobSpec
from shepherd.store.shared.window import Lane, in_lane

__all__ = ["BOTTOM", "Parked", "ReadyQueue"]

ReadyKey = tuple[int, float, int]  # (rank, not-before, seq): ``store.shared.window``
LaterKey = tuple[float, int]  # (not-before, seq)
BOTTOM: ReadyKey = (-1, -math.inf, -1)  # a horizon before every key: nothing held yet


class Parked:
    """Dispatches waiting on a key (``job:<id>``, ``pool:<name>``), FIFO per key; each
    waiter is kept as ``(dispatch id, job id)``. Keys parked with an ``order`` (a rate
    limit's ``rate:<bucket>``) hand on by that order instead (priority rank, seq)."""

    __slots__ = ("_queues", "_ranked")

    def __init__(self) -> None:
        self._queues: dict[str, deque[tuple[int, int]]] = {}
        self._ranked: dict[str, list[tuple[int, int, int, int]]] = {}  # (rank, seq, id, job)

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values()) + sum(
            len(h) for h in self._ranked.values()
        )

    def count(self, key: str) -> int:
        q = self._queues.get(key)
        h = self._ranked.get(key)
        return (len(q) if q else 0) + (len(h) if h else 0)

    def park(
        self, key: str, dispatch_id: int, job_id: int, order: tuple[int, int] | None = None
    ) -> None:
        if order is None:
            self._queues.setdefault(key, deque()).append((dispatch_id, job_id))
        else:
            heapq.heappush(self._ranked.setdefault(key, []), (*order, dispatch_id, job_id))

    def best(self, key: str, alive: Container[int]) -> tuple[int, int] | None:
        """The order (rank, seq) of the first waiter of an ordered key still in ``alive``."""
        h = self._ranked.get(key)
        while h and h[0][2] not in alive:
            heapq.heappop(h)
        return (h[0][0], h[0][1]) if h else None

    def pop(self, key: str, alive: Container[int]) -> int | None:
        """The first waiter of ``key`` still in ``alive``; the ones before it that have
        left the queue meanwhile (cancelled) are dropped."""
        h = self._ranked.get(key)
        while h:
            dispatch_id = heapq.heappop(h)[2]
            if dispatch_id in alive:
                return dispatch_id
        q = self._queues.get(key)
        while q:
            dispatch_id, _ = q.popleft()
            if dispatch_id in alive:
                return dispatch_id
        return None

    def spill(self, key: str, keep: int, alive: Container[int]) -> list[int]:
        """Drop the waiters of ``key`` past its first ``keep`` still in ``alive``; the
        dropped ones, in key order."""
        out: list[int] = []
        if q := self._queues.get(key):
            live = [w for w in q if w[0] in alive]
            self._queues[key] = deque(live[:keep])
            out += [w[0] for w in live[keep:]]
        if h := self._ranked.get(key):
            ranked = sorted(w for w in h if w[2] in alive)  # a sorted list is a heap
            self._ranked[key] = ranked[:keep]
            out += [w[2] for w in ranked[keep:]]
        return out

    def take_changed(
        self, before: Mapping[int, JobSpec | None], after: Mapping[int, JobSpec]
    ) -> list[int]:
        """Take every waiter of a job in ``before`` whose spec is not the same in ``after``
        (changed or removed), in queue order per key: they must be checked again."""
        waiting = {job_id for q in self._queues.values() for _, job_id in q}
        waiting |= {w[3] for h in self._ranked.values() for w in h}
        changed = {j for j in waiting if j in before and after.get(j) != before[j]}
        out: list[int] = []
        for key in [k for k, h in self._ranked.items() if any(w[3] in changed for w in h)]:
            h = self._ranked[key]
            out += [w[2] for w in sorted(h) if w[3] in changed]
            self._ranked[key] = [w for w in h if w[3] not in changed]
            heapq.heapify(self._ranked[key])
        for key in [k for k, q in self._queues.items() if any(w[1] in changed for w in q)]:
            q = self._queues[key]
            out += [d for d, job_id in q if job_id in changed]
            self._queues[key] = deque(w for w in q if w[1] not in changed)
        return out


class ReadyQueue:
    """Queued dispatches by id, the ready and delayed heaps over them, parked waiters;
    with a ``window``, the head of the queue only (module docstring)."""

    __slots__ = (
        "_delayed",
        "_entries",
        "_pinned",
        "_ready",
        "_spilled",
        "_trim_at",
        "horizon",
        "later",
        "parked",
        "rewind",
        "starved",
        "window",
    )

    def __init__(self, window: int | None = None) -> None:
        self._entries: dict[int, Entry] = {}
        self._ready: list[tuple[int, float, int, int]] = []  # (rank, not-before, seq, id)
        self._delayed: list[tuple[float, int, int]] = []  # (not-before, seq, id)
        self.parked = Parked()
        self.window = window  # None: every queued dispatch is held
        self.horizon: ReadyKey | None = None  # due ones past it are in the store only
        self.later: LaterKey | None = None  # future ones past it are in the store only
        self.starved = False  # a pop stopped at the horizon: the loader reads on
        self._pinned: set[int] = set()  # deferred here: not what their rows say
        self._trim_at = 2 * window if window else 0
        self._spilled: set[str] = set()  # keys whose later waiters are the store's only
        self.rewind = False  # a spilled key ran dry: the loader reads from the head again

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, dispatch_id: object) -> bool:
        return dispatch_id in self._entries

    def get(self, dispatch_id: int) -> Entry | None:
        return self._entries.get(dispatch_id)

    def held(self) -> list[Entry]:
        """Every entry held now."""
        return list(self._entries.values())

    def holds(self, e: Entry, now: float) -> bool:
        """Does ``e`` sort within the cursors (a refill would not find it)?"""
        if e.not_before > now:
            return self.later is None or (e.not_before, e.seq) <= self.later
        return self.horizon is None or (e.priority, e.not_before, e.seq) <= self.horizon

    def add(self, e: Entry, now: float) -> None:
        """Queue ``e`` (an entry already held with the same seq is left as it is); one
        past the cursors is left to the store (its older seq, if held, leaves)."""
        old = self._entries.get(e.id)
        if old is not None and old.seq == e.seq:
            return
        if not self.holds(e, now):
            if old is not None:
                self.take(e.id)
            return
        self._entries[e.id] = e
        self._pinned.discard(e.id)
        if e.not_before > now:
            heapq.heappush(self._delayed, (e.not_before, e.seq, e.id))
        else:
            heapq.heappush(self._ready, (e.priority, e.not_before, e.seq, e.id))
        if self._trim_at and max(len(self._ready), len(self._delayed)) > self._trim_at:
            self.trim()

    @property
    def ready_size(self) -> int:
        """Items on the ready heap (stale ones included: they are few)."""
        return len(self._ready)

    def trim(self) -> None:
        """Drop the ready and delayed tails beyond the window; the cursors come back
        to the last entry kept, so a refill finds the dropped ones in the store."""
        if not self.window:
            return
        window, entries, pinned = self.window, self._entries, self._pinned

        def live(e: Entry | None, seq: int) -> bool:
            return e is not None and e.seq == seq and e.id not in pinned

        ready = sorted(i for i in self._ready if live(entries.get(i[3]), i[2]))
        if len(ready) > window:
            for r in ready[window:]:
                entries.pop(r[3], None)
            last = ready[window - 1][:3]
            self.horizon = last if self.horizon is None else min(self.horizon, last)
            self._ready = [i for i in self._ready if i[3] in entries]
            heapq.heapify(self._ready)
        later = sorted(i for i in self._delayed if live(entries.get(i[2]), i[1]))
        if len(later) > window:
            for d in later[window:]:
                entries.pop(d[2], None)
            cut = later[window - 1][:2]
            self.later = cut if self.later is None else min(self.later, cut)
            self._delayed = [i for i in self._delayed if i[2] in entries]
            heapq.heapify(self._delayed)
        self._trim_at = max(2 * window, 2 * len(self._ready), 2 * len(self._delayed))

    def promote(self, now: float) -> None:
        """Move what came due by ``now`` from the delayed heap to the ready heap."""
        delayed, entries = self._delayed, self._entries
        while delayed and delayed[0][0] <= now:
            _, seq, dispatch_id = heapq.heappop(delayed)
            e = entries.get(dispatch_id)
            if e is not None and e.seq == seq:
                heapq.heappush(self._ready, (e.priority, e.not_before, e.seq, e.id))

    def next_wake(self) -> float | None:
        """The earliest not-before on the delayed heap (stale items included: waking
        for one costs a pass that finds nothing), or the ``later`` cursor's: the store
        holds the rows past it."""
        head = self._delayed[0][0] if self._delayed else None
        if self.later is None:
            return head
        return self.later[0] if head is None else min(head, self.later[0])

    def pop_ready(self) -> Entry | None:
        """The first ready entry, still held: the caller takes, parks or defers it.
        None when there is none up to the horizon (``starved``: the store has more)."""
        ready, entries = self._ready, self._entries
        while ready:
            item = heapq.heappop(ready)
            e = entries.get(item[3])
            if e is None or e.seq != item[2]:
                continue
            if self.horizon is not None and item[:3] > self.horizon:
                heapq.heappush(ready, item)
                self.starved = True
                return None
            return e
        self.starved = self.horizon is not None  # the store holds more past it
        return None

    @property
    def has_ready(self) -> bool:
        return bool(self._ready)

    def take(self, dispatch_id: int) -> Entry | None:
        """Remove an entry from the queue (it starts, settles or is cancelled)."""
        self._pinned.discard(dispatch_id)
        return self._entries.pop(dispatch_id, None)

    def defer(self, e: Entry, until: float) -> None:
        """Not before ``until``: the entry waits on the delayed heap (no attempt spent);
        its row still says the old not-before, so ``trim`` never drops it."""
        self._entries[e.id] = msgspec.structs.replace(e, not_before=until)
        self._pinned.add(e.id)
        heapq.heappush(self._delayed, (until, e.seq, e.id))

    def park(self, key: str, e: Entry) -> None:
        """``e`` waits on ``key``. A key holding over four windows of waiters (a paused
        scope, a busy pool or rate limit over a deep backlog) keeps its first window
        and leaves the rest to the store: when its waiters held run out, the loader
        reads from the queue's head again (``rewind``) and finds them, in order. Not
        ``job:`` keys (``max_queued`` bounds them and counts them) nor ``caps:`` ones
        (the agent table knows their waiters)."""
        order = (e.priority, e.seq) if key.startswith("rate:") else None
        self.parked.park(key, e.id, e.job_id, order)
        window = self.window
        spills = window and not key.startswith(("job:", "caps:"))
        if spills and window and self.parked.count(key) > 4 * window:
            for dispatch_id in self.parked.spill(key, window, self._entries):
                self.take(dispatch_id)
            self._spilled.add(key)

    def best_parked(self, key: str) -> tuple[int, int] | None:
        return self.parked.best(key, self._entries)

    def unpark(self, key: str) -> bool:
        """Hand ``key`` to its next waiter still queued: back on the ready heap."""
        return self.unpark_one(key) is not None

    def unpark_one(self, key: str) -> int | None:
        """``unpark``, naming the waiter handed the key (None: nobody waited)."""
        dispatch_id = self.parked.pop(key, self._entries)
        if dispatch_id is not None:
            self.ready_again((dispatch_id,))
        if key in self._spilled and (dispatch_id is None or not self.parked.count(key)):
            self._spilled.discard(key)
            self.rewind = True
        return dispatch_id

    def ready_again(self, ids: Iterable[int]) -> None:
        """Put held entries back on the ready heap (their waiting is over)."""
        for e in filter(None, map(self._entries.get, ids)):
            heapq.heappush(self._ready, (e.priority, e.not_before, e.seq, e.id))

    def take_changed(
        self, before: Mapping[int, JobSpec | None], after: Mapping[int, JobSpec]
    ) -> None:
        """The waiters of a job whose spec changed go back through admission (those
        left to the store too: a rewind, if any key spilled)."""
        self.ready_again(self.parked.take_changed(before, after))
        self.rewind = self.rewind or bool(self._spilled)

    def any_ready(self) -> bool:
        """Whether the ready heap holds a live entry (its stale items are skipped)."""
        entries = self._entries
        return any((e := entries.get(i[3])) is not None and e.seq == i[2] for i in self._ready)

    def keep_lane(self, lane: Lane) -> None:
        """Leave to the store the ready entries outside ``lane`` (``store.shared.window``:
        another node's share of the queue) but those deferred here. The caller draws the
        horizon back to the bottom, so the lane is read again in order."""
        entries, pinned = self._entries, self._pinned
        gone = [
            e.id
            for i in self._ready
            if (e := entries.get(i[3])) is not None
            and e.seq == i[2]
            and e.id not in pinned
            and not in_lane(e.priority, e.seq, lane)
        ]
        for dispatch_id in gone:
            entries.pop(dispatch_id, None)
        self._ready = [i for i in self._ready if i[3] in entries]
        heapq.heapify(self._ready)

    def statistics(self) -> dict[str, int]:
        return {
            "queued": len(self._entries),
            "ready": len(self._ready),
            "delayed": len(self._delayed),
            "parked": len(self.parked),
        }

    def __repr__(self) -> str:
        return f"<ReadyQueue queued={len(self._entries)} ready={len(self._ready)}>"
