"""The ready queue: every queued dispatch the dispatcher holds in memory.

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
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Container, Iterable, Mapping

import msgspec

from shepherd.actors.messages import Entry
from shepherd.store.models import JobSpec

__all__ = ["Parked", "ReadyQueue"]


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
    """Queued dispatches by id, the ready and delayed heaps over them, parked waiters."""

    __slots__ = ("_delayed", "_entries", "_ready", "parked")

    def __init__(self) -> None:
        self._entries: dict[int, Entry] = {}
        self._ready: list[tuple[int, float, int, int]] = []  # (rank, not-before, seq, id)
        self._delayed: list[tuple[float, int, int]] = []  # (not-before, seq, id)
        self.parked = Parked()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, dispatch_id: object) -> bool:
        return dispatch_id in self._entries

    def get(self, dispatch_id: int) -> Entry | None:
        return self._entries.get(dispatch_id)

    def add(self, e: Entry, now: float) -> None:
        """Queue ``e`` (an entry already held with the same seq is left as it is)."""
        old = self._entries.get(e.id)
        if old is not None and old.seq == e.seq:
            return
        self._entries[e.id] = e
        if e.not_before > now:
            heapq.heappush(self._delayed, (e.not_before, e.seq, e.id))
        else:
            heapq.heappush(self._ready, (e.priority, e.not_before, e.seq, e.id))

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
        for one costs a pass that finds nothing)."""
        return self._delayed[0][0] if self._delayed else None

    def pop_ready(self) -> Entry | None:
        """The first ready entry, still held: the caller takes, parks or defers it."""
        ready, entries = self._ready, self._entries
        while ready:
            _, _, seq, dispatch_id = heapq.heappop(ready)
            e = entries.get(dispatch_id)
            if e is not None and e.seq == seq:
                return e
        return None

    @property
    def has_ready(self) -> bool:
        return bool(self._ready)

    def take(self, dispatch_id: int) -> Entry | None:
        """Remove an entry from the queue (it starts, settles or is cancelled)."""
        return self._entries.pop(dispatch_id, None)

    def defer(self, e: Entry, until: float) -> None:
        """Not before ``until``: the entry waits on the delayed heap (no attempt spent)."""
        self._entries[e.id] = msgspec.structs.replace(e, not_before=until)
        heapq.heappush(self._delayed, (until, e.seq, e.id))

    def park(self, key: str, e: Entry) -> None:
        order = (e.priority, e.seq) if key.startswith("rate:") else None
        self.parked.park(key, e.id, e.job_id, order)

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
        return dispatch_id

    def ready_again(self, ids: Iterable[int]) -> None:
        """Put held entries back on the ready heap (their waiting is over)."""
        for e in filter(None, map(self._entries.get, ids)):
            heapq.heappush(self._ready, (e.priority, e.not_before, e.seq, e.id))

    def take_changed(
        self, before: Mapping[int, JobSpec | None], after: Mapping[int, JobSpec]
    ) -> None:
        """The waiters of a job whose spec changed go back through admission."""
        self.ready_again(self.parked.take_changed(before, after))

    def statistics(self) -> dict[str, int]:
        return {
            "queued": len(self._entries),
            "ready": len(self._ready),
            "delayed": len(self._delayed),
            "parked": len(self.parked),
        }

    def __repr__(self) -> str:
        return f"<ReadyQueue queued={len(self._entries)} ready={len(self._ready)}>"
