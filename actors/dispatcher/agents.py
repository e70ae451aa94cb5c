"""The agent table: the registered agents as the dispatcher assigns against them.

It owns, for each agent, its definition (capabilities, policy, ``max_concurrent``,
model) and live state (status, runs in flight, consecutive failures), and three
structures that make one assignment cost O(log n), whatever the number of agents or
queued dispatches:

- the **capability index** ``capability → agent ids`` (``*`` agents apart): the
  candidates of a requirement set are the intersection of its capabilities' sets,
  smallest first, computed once per distinct requirement set (a ``Need``);
- per ``Need``, a **heap** of its eligible candidates ordered as the score ranks them
  (``assign.rank_key``: factor, fewest running, name). An entry carries the agent's
  version; every change of an agent (a run held or released, a status) bumps it and
  pushes fresh entries, so stale ones are skipped when popped (lazy deletion) and a
  heap is rebuilt when stale entries outnumber live ones;
- the **held** runs (assigned, or claimed by the agent's worker: ``take_over``): dispatch
  id → agent, for the release and for the runs of an agent that goes offline.

A dispatch that finds no eligible agent parks on its need's key (``caps:gpu,python``,
``…@owner`` under the owner filter) with a visible reason; the key is handed on when
an agent of that need frees a slot (``release``) or becomes eligible (``load``), never
polled. What the dispatcher must record (the agent of each claim, why a dispatch waits,
an agent marked degraded) collects in ``notes`` until the next commit (``take_notes``).
A plain class, no I/O, no clock. It is longer than most because the index, the heaps
and the held runs change together on every event: split apart, each part would reach
into the others' state.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec

from shepherd.actors.dispatcher import assign
from shepherd.actors.dispatcher.ready import Parked
from shepherd.actors.dispatcher.wake import Wake
from shepherd.actors.messages import Entry
from shepherd.store.models import Agent, JobSpec
from shepherd.store.ops import AgentNotes, AgentState

__all__ = ["AgentTable", "Need", "Slot"]

_Item = tuple[float, int, str, str, int]  # (-factor, running, name, id, version)


class Slot:
    """One agent: its definition and live state."""

    __slots__ = (
        "capabilities",
        "failures",
        "held",
        "id",
        "keys",
        "max_concurrent",
        "model",
        "name",
        "policy",
        "rank",
        "running",
        "status",
        "version",
        "wake",
        "wake_failed",
        "wake_timeout",
        "waking",
    )

    def __init__(self, a: Agent) -> None:
        self.id = a.id
        self.version = 0
        self.running = 0
        self.held: set[int] = set()
        self.keys: set[str] = set()
        self.rank = 0.0  # ``factor`` as of the last change (``AgentTable._push``)
        self.define(a)

    def define(self, a: Agent) -> None:
        self.name = a.name
        self.capabilities = frozenset(a.capabilities)
        self.policy = a.policy
        self.max_concurrent = a.max_concurrent
        self.model = a.model
        self.status = a.status
        self.failures = a.failures
        self.wake = a.wake
        self.wake_timeout = a.wake_timeout
        self.waking = False  # its wake hook runs (``wake.py``): it takes nothing meanwhile
        self.wake_failed: str | None = None  # the hook failed: nothing until its row changes

    def covers(self, caps: frozenset[str]) -> bool:
        return "*" in self.capabilities or caps <= self.capabilities

    @property
    def factor(self) -> float:
        if self.waking or self.wake_failed is not None:
            return 0.0
        return assign.factor(self.status, self.policy, self.running, self.max_concurrent)

    @property
    def free(self) -> int:
        return max(0, self.max_concurrent - self.running) if self.factor > 0 else 0


class Need(msgspec.Struct):
    """A distinct requirement: capabilities and, under the owner filter, an owner."""

    key: str
    caps: frozenset[str]
    owner: str | None
    reason: str
    heap: list[_Item] = msgspec.field(default_factory=list)
    members: set[str] = msgspec.field(default_factory=set)


class AgentTable:
    def __init__(self, *, owners: Mapping[str, Iterable[str]] | None = None) -> None:
        self._agents: dict[str, Slot] = {}
        self._by_cap: dict[str, set[str]] = {}
        self._wild: set[str] = set()
        self._needs: dict[str, Need] = {}
        self._need_of: dict[tuple[tuple[str, ...], tuple[str, ...], str | None], Need | None] = {}
        self._held: dict[int, str] = {}
        self.owners = {o: frozenset(ids) for o, ids in (owners or {}).items()}
        self.degraded_after = 5  # consecutive failed runs (the breaker's default)
        self.rev = 0  # the newest rev loaded from the store
        self.assigned = 0
        self._assigned: list[tuple[int, str]] = []
        self._waiting: dict[int, str] = {}  # dispatch id → the reason it waits
        self._new_waiting: list[tuple[int, str]] = []
        self._states: list[AgentState] = []
        self._wakes: list[Wake] = []  # hooks to run (the shell starts them)
        self._woken: dict[str, str] = {}  # agent id → "waking" | "waking failed"

    def configure(self, owners: Mapping[str, Iterable[str]], degraded_after: int) -> None:
        self.owners = {o: frozenset(ids) for o, ids in owners.items()}
        self.degraded_after = degraded_after

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, agent_id: str) -> Slot | None:
        return self._agents.get(agent_id)

    # -- loading -------------------------------------------------------------------------

    def load(self, rows: Iterable[Agent]) -> tuple[list[str], list[int]]:
        """Apply agent rows (all, or those written since ``rev``). Returns the keys to
        hand on (one per slot an agent now offers) and the dispatches whose runs must
        be cancelled (their agent went offline or was removed)."""
        keys: list[str] = []
        cancel: list[int] = []
        for a in rows:
            self.rev = max(self.rev, a.rev)
            s = self._agents.get(a.id)
            if (a.removed or a.status == "offline") and s is not None:
                cancel += sorted(s.held)
            if a.removed:
                if s is not None:
                    self._drop(s)
                    del self._agents[a.id]
                continue
            before = s.free if s is not None else 0
            had = set(s.keys) if s is not None else set()
            if s is None:
                s = self._agents[a.id] = Slot(a)
            else:
                self._drop(s)
                s.define(a)
                self._woken.pop(a.id, None)
            self._index(s)
            for key in s.keys:  # new needs get every free slot, old ones what it gained
                keys += [key] * (s.free if key not in had else max(0, s.free - before))
        return keys, cancel

    def _drop(self, s: Slot) -> None:
        for cap in s.capabilities:
            ids = self._by_cap.get(cap)
            if ids is not None:
                ids.discard(s.id)
        self._wild.discard(s.id)
        for key in s.keys:
            need = self._needs.get(key)
            if need is not None:
                need.members.discard(s.id)
        s.keys.clear()
        s.version += 1

    def _index(self, s: Slot) -> None:
        if "*" in s.capabilities:
            self._wild.add(s.id)
        for cap in s.capabilities:
            self._by_cap.setdefault(cap, set()).add(s.id)
        for need in self._needs.values():
            if s.covers(need.caps) and self._owned(s.id, need.owner):
                need.members.add(s.id)
                s.keys.add(need.key)
        self._push(s)

    def _owned(self, agent_id: str, owner: str | None) -> bool:
        return owner is None or agent_id in self.owners.get(owner, ())

    # -- assignment ----------------------------------------------------------------------

    def need(self, e: Entry, job: JobSpec) -> Need | None:
        """What ``e`` requires (its job's capabilities and its own), None: nothing."""
        if not job.capabilities and not e.needs:
            return None
        owner = e.owner if e.owner is not None and self.owners else None
        at = (tuple(job.capabilities), e.needs, owner)
        try:
            return self._need_of[at]
        except KeyError:
            pass
        caps = frozenset(c.lower() for c in (*job.capabilities, *e.needs))
        key = "caps:" + ",".join(sorted(caps)) + (f"@{owner}" if owner else "")
        need = self._needs.get(key)
        if need is None:
            need = self._needs[key] = self._new_need(key, caps, owner)
        self._need_of[at] = need
        return need

    def _new_need(self, key: str, caps: frozenset[str], owner: str | None) -> Need:
        need = Need(key, caps, owner, assign.unmatched_reason(caps, owner))
        sets = sorted((self._by_cap.get(c, set()) for c in caps), key=len)
        found = set(sets[0]).intersection(*sets[1:]) if sets else set(self._agents)
        for agent_id in found | self._wild:
            if self._owned(agent_id, owner):
                need.members.add(agent_id)
                s = self._agents[agent_id]
                s.keys.add(key)
                if s.factor > 0:
                    heapq.heappush(need.heap, self._item(s))
        return need

    def choose(self, need: Need) -> Slot | None:
        """The best eligible agent of ``need`` (not taken: ``hold`` takes it). A
        sleeping winner with a wake hook is woken instead (``wake.py``) and passed over
        while it wakes."""
        heap, agents = need.heap, self._agents
        while heap:
            agent_id, version = heap[0][3], heap[0][4]
            s = agents.get(agent_id)
            if s is not None and s.version == version and agent_id in need.members:
                if not (s.wake and s.status == "sleeping" and not s.running):
                    return s
                s.waking = True
                self._woken[s.id] = "waking"
                self._wakes.append(Wake(s.id, s.wake, float(s.wake_timeout)))
                self._push(s)  # its entries are stale now
                continue
            heapq.heappop(heap)
        return None

    def wait(self, e: Entry, need: Need) -> None:
        """``e`` parks on ``need.key``: its reason is recorded once."""
        reason = need.reason
        for agent_id, what in self._woken.items():
            if agent_id in need.members:
                reason = f"{what}: {agent_id}"
                break
        if self._waiting.get(e.id) != reason:
            self._waiting[e.id] = reason
            self._new_waiting.append((e.id, reason))

    def take_wakes(self) -> list[Wake]:
        wakes, self._wakes = self._wakes, []
        return wakes

    def woken(self, agent_id: str, ok: bool, error: str | None) -> list[str]:
        """A wake hook answered: awake → ready (recorded), every free slot offered to
        its needs' waiters; failed → nothing until its row changes, and one waiter per
        need looks again (to wait with ``waking failed``). The keys to hand on."""
        s = self._agents.get(agent_id)
        if s is None or not s.waking:
            return []
        s.waking = False
        if ok:
            self._woken.pop(agent_id, None)
            s.status = "ready"
            self._states.append(AgentState(id=s.id, status="ready", when=("sleeping",)))
        else:
            self._woken[agent_id] = "waking failed"
            s.wake_failed = error or "failed"
        self._push(s)
        return [k for k in s.keys for _ in range(max(1, s.free))]

    def hold(self, e: Entry, s: Slot) -> Entry:
        """``e`` was admitted on agent ``s``: count it; ``e`` with its agent."""
        self._count(s, e.id)
        self._waiting.pop(e.id, None)
        self._assigned.append((e.id, s.id))
        self.assigned += 1
        return msgspec.structs.replace(e, agent=s.id, agent_model=s.model)

    def take_over(self, dispatch_id: int, agent: str) -> list[str]:
        """A worker of ``agent`` claimed the run of ``dispatch_id``: it counts on that
        agent (when registered) until ``release``. The keys an earlier holder freed."""
        keys = self.release(dispatch_id)
        s = self._agents.get(agent)
        if s is not None:
            self._count(s, dispatch_id)
        return keys

    def _count(self, s: Slot, dispatch_id: int) -> None:
        s.running += 1
        s.held.add(dispatch_id)
        self._held[dispatch_id] = s.id
        self._push(s)

    def release(self, dispatch_id: int) -> list[str]:
        """The run of ``dispatch_id`` ended (or its claim failed): its agent's slot is
        free again; the keys to hand to their next waiter."""
        agent_id = self._held.pop(dispatch_id, None)
        s = self._agents.get(agent_id) if agent_id is not None else None
        if s is None:
            return []
        s.running -= 1
        s.held.discard(dispatch_id)
        self._push(s)
        return list(s.keys) if s.rank > 0 else []

    def on_outcome(self, agent_id: str | None, outcome: str) -> None:
        """A run of ``agent_id`` ended: ``degraded_after`` failures (error, timeout,
        crashed) in a row mark it degraded (it gets nothing new until a heartbeat); a
        success resets the count; a cancelled run counts neither way."""
        s = self._agents.get(agent_id) if agent_id is not None else None
        if s is None or outcome == "cancelled":
            return
        if outcome == "ok":
            if s.failures:
                s.failures = 0
                self._states.append(AgentState(id=s.id, failures=0))
            return
        s.failures += 1
        if s.failures >= self.degraded_after and s.status in ("ready", "sleeping", "busy"):
            s.status = "degraded"
            self._push(s)
            self._states.append(
                AgentState(
                    id=s.id,
                    status="degraded",
                    failures=s.failures,
                    when=("ready", "sleeping", "busy"),
                )
            )

    def _item(self, s: Slot) -> _Item:
        return (*assign.rank_key(s.rank, s.running, s.name), s.id, s.version)

    def _push(self, s: Slot) -> None:
        """``s`` changed: a new version, fresh entries in the heaps of its needs (one
        item, pushed into each: O(needs of s * log n))."""
        s.version += 1
        s.rank = s.factor
        item = self._item(s) if s.rank > 0 else None
        needs, push = self._needs, heapq.heappush
        for key in s.keys:
            need = needs[key]
            if len(need.heap) > 2 * len(need.members) + 64:
                self._rebuild(need)
            elif item is not None:
                push(need.heap, item)

    def _rebuild(self, need: Need) -> None:
        live = [s for s in map(self._agents.__getitem__, need.members) if s.rank > 0]
        need.heap = [self._item(s) for s in live]
        heapq.heapify(need.heap)

    # -- what to record ------------------------------------------------------------------

    def take_notes(self, now: float) -> AgentNotes | None:
        if not (self._assigned or self._new_waiting or self._states):
            return None
        notes = AgentNotes(self._assigned, self._new_waiting, self._states, now)
        self._assigned, self._new_waiting, self._states = [], [], []
        return notes

    def statistics(self, parked: Parked | None = None) -> dict[str, object]:
        """Agents by status; with the queue's ``parked``, the dispatches waiting for an
        agent by reason (the ten most common)."""
        by = Counter(assign.effective_status(s.status, s.running) for s in self._agents.values())
        waiting: Counter[str] = Counter()
        if parked is not None:
            for need in self._needs.values():
                if count := parked.count(need.key):
                    waiting[need.reason] += count
        return {
            "agents": len(self._agents),
            "by_status": dict(by),
            "assigned": self.assigned,
            "needs": len(self._needs),
            "unmatched": dict(waiting.most_common(10)),
        }

    def __repr__(self) -> str:
        return f"<AgentTable {len(self._agents)} agents, {len(self._needs)} needs>"
