"""Admission: may this ready dispatch start now? No I/O, no clock (``now`` is passed).

``admit`` pops the ready queue in order (priority rank, not-before, seq) while run
slots are free and asks ``check`` about each. The verdicts:

- ``run``: start it (claimed in the next commit), unless a rate limit has no token for
  it (``controls.Controls.wait``: ``rate-limited``) or its executor's circuit breaker
  says not yet (``BreakerTable.gate``): then it is deferred to that instant, no attempt
  spent; a token is taken only when it is admitted;
- ``dead``: it expired before it could start (dead letter, reason ``expired``);
- ``skip``: it will not run; a skipped run is recorded with the reason
  (``skipped-overlap``, ``queue-full``, ``disabled``: a disabled job's dispatches of
  every kind but an operator's ``run_now``);
- ``cancel``: its job no longer exists;
- ``park``: it waits on a key (``job:<id>`` for overlap ``queue`` / ``replace``,
  ``pool:<name>`` for a busy resource pool, ``paused:<scope>`` while a pause holds it,
  ``controls``) and is put back in the ready queue the moment a run holding that key
  ends or the pause is resumed — no polling; ``caps:<capabilities>`` when no agent can
  take it now (reason ``unmatched``; handed on when one frees up or appears,
  ``agents.AgentTable``);
- ``replace``: cancel the job's running runs, then park this one on the job key;
- ``defer``: not before the given time; no attempt is spent.

Parked dispatches wait FIFO per key (``ready.Parked``). A key is handed on when its
holder ends (``Admission.release``), and also when a dispatch leaves the queue without
running while nothing holds the key (``free_keys``): a waiter that is skipped, expired,
cancelled or whose job is gone passes its turn to the next one instead of ending the
chain. When a job's spec changes (disabled, removed, a new overlap policy), its
waiters go back through ``check`` at once (``ReadyQueue.take_changed``): the waiting
fires of a disabled job are skipped (``disabled``) then, not left queued.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Literal

import msgspec

from shepherd.actors.cluster import Membership
from shepherd.actors.dispatcher.agents import AgentTable
from shepherd.actors.dispatcher.breakers import BreakerTable
from shepherd.actors.dispatcher.controls import Controls
from shepherd.actors.dispatcher.rates import RateLimit
from shepherd.actors.dispatcher.ready import Parked, ReadyQueue
from shepherd.actors.messages import Entry
from shepherd.store.models import JobSpec, SettleReason, is_settle_reason
from shepherd.store.ops import Settle

__all__ = ["Admission", "Admitted", "Verdict", "admit", "check", "free_keys", "settle"]

Action = Literal["run", "dead", "skip", "cancel", "park", "replace", "defer"]
# a settled dispatch's reason, or why it waits (parked, replacing, deferred)
Reason = Literal[
    SettleReason,
    "overlap-queued",
    "replaced",
    "pool-busy",
    "circuit-open",
    "unmatched",
    "paused",
    "rate-limited",
]


class Verdict(msgspec.Struct, frozen=True):
    action: Action
    reason: Reason | None = None
    key: str | None = None
    until: float | None = None


RUN = Verdict("run")
RATE_PREFIX = "rate:"  # parked behind the dispatch that waits for a bucket's next token


class Admission:
    """Runs held per job and per pool, against the pool limits."""

    __slots__ = (
        "_share",
        "agents",
        "busy_pools",
        "controls",
        "pool_limits",
        "running_by_job",
        "running_by_pool",
    )

    def __init__(
        self,
        pool_limits: Mapping[str, int] | None = None,
        *,
        rates: Mapping[str, RateLimit] | None = None,
    ) -> None:
        self.running_by_job: Counter[int] = Counter()
        self.running_by_pool: Counter[str] = Counter()
        self.pool_limits: dict[str, int] = dict(pool_limits or {})
        self.agents = AgentTable()  # runs held per agent, capability-based assignment
        self.controls = Controls(rates)  # pauses and rate limits (controls.py)
        self.busy_pools: set[str] = set()  # pools a dispatch was parked behind
        self._share: Callable[[int], int] = lambda limit: limit

    def pool_limit(self, pool: str) -> int:
        """This node's share (``shares``) of the pool's limit; an undeclared pool is a
        mutex (OCS), cluster-wide too."""
        return self._share(self.pool_limits.get(pool, 1))

    def shares(self, node: Membership) -> list[str]:
        """Take ``node``'s shares of the cluster-wide pool limits and rate buckets (on
        every change of the live nodes); the pool keys whose waiters may start now."""
        self._share = node.share
        self.controls.rates.split(1 if node.single else node.count, node.rank)
        keys: list[str] = []
        for pool in sorted(self.busy_pools | set(self.running_by_pool)):
            keys += [f"pool:{pool}"] * max(0, self.pool_limit(pool) - self.running_by_pool[pool])
        return keys

    def hold(self, job_id: int, pool: str | None) -> None:
        """A dispatch of ``job_id`` was admitted: count it against its job and pool."""
        self.running_by_job[job_id] += 1
        if pool:
            self.running_by_pool[pool] += 1

    def release(self, job_id: int, pool: str | None) -> list[str]:
        """Give back what ``hold`` counted; the keys to hand to their next waiter."""
        self.running_by_job[job_id] -= 1
        if self.running_by_job[job_id] <= 0:
            del self.running_by_job[job_id]
        if not pool:
            return [f"job:{job_id}"]
        self.running_by_pool[pool] -= 1
        return [f"job:{job_id}", f"pool:{pool}"]

    def statistics(self) -> dict[str, int]:
        return {
            "holding_jobs": len(self.running_by_job),
            "holding_pools": len(self.running_by_pool),
        }


def check(
    entry: Entry, job: JobSpec | None, state: Admission, parked: Parked, now: float
) -> Verdict:
    if job is None:
        return Verdict("cancel", "job removed")
    if entry.expires_at is not None and now >= entry.expires_at:
        return Verdict("dead", "expired")
    if not job.enabled and entry.kind != "run_now":
        return Verdict("skip", "disabled")
    if (held := state.controls.held_key(entry, job)) is not None:
        return Verdict("park", "paused", key=held)
    if state.running_by_job[entry.job_id] > 0:
        key = f"job:{entry.job_id}"
        if job.overlap == "skip":
            return Verdict("skip", "skipped-overlap")
        if job.overlap == "queue":
            if parked.count(key) >= job.max_queued:
                return Verdict("skip", "queue-full")
            return Verdict("park", "overlap-queued", key=key)
        if job.overlap == "replace":
            return Verdict("replace", "replaced", key=key)
    if job.pool and state.running_by_pool[job.pool] >= state.pool_limit(job.pool):
        state.busy_pools.add(job.pool)
        return Verdict("park", "pool-busy", key=f"pool:{job.pool}")
    return RUN


def free_keys(
    job_id: int, job: JobSpec | None, state: Admission, dispatch_id: int | None = None
) -> list[str]:
    """The wait keys of a dispatch of ``job_id`` that nothing holds now. A dispatch that
    leaves the queue without running hands these to their next waiter (also the rate
    limit it was waiting on the clock for, if it was: ``dispatch_id``)."""
    keys = [f"job:{job_id}"] if state.running_by_job[job_id] <= 0 else []
    if dispatch_id is not None and (bucket := state.controls.unlead(dispatch_id)) is not None:
        keys.append(RATE_PREFIX + bucket)
    pool = job.pool if job is not None else None
    if pool and state.running_by_pool[pool] < state.pool_limit(pool):
        keys.append(f"pool:{pool}")
    return keys


_SETTLE: dict[str, tuple[Literal["done", "dead", "cancelled"], Literal["skipped", "cancelled"]]] = {
    "dead": ("dead", "cancelled"),
    "skip": ("done", "skipped"),
    "cancel": ("cancelled", "cancelled"),
}


def settle(dispatch_id: int, v: Verdict) -> Settle:
    """How a ``dead`` / ``skip`` / ``cancel`` verdict ends its dispatch (status, outcome)."""
    status, outcome = _SETTLE[v.action]
    reason = v.reason
    if not is_settle_reason(reason):
        raise ValueError(f"a {v.action!r} verdict needs a settle reason, not {reason!r}")
    return Settle(dispatch_id=dispatch_id, status=status, outcome=outcome, reason=reason)


class Admitted:
    """What one ``admit`` pass decided, for the caller to commit and perform."""

    __slots__ = ("claims", "deferred", "replaced", "settles", "unparked")

    def __init__(self) -> None:
        self.claims: list[Entry] = []  # admitted: claim a run for each
        self.settles: list[tuple[Entry, Settle]] = []  # ended without running
        self.replaced: list[int] = []  # job ids whose running runs are to be cancelled
        self.deferred = 0  # held back by a rate limit or an open circuit breaker
        self.unparked = 0  # waiters handed a key freed by a settled dispatch


def admit(
    queue: ReadyQueue,
    jobs: Mapping[int, JobSpec],
    state: Admission,
    breakers: BreakerTable,
    free: int,
    now: float,
) -> Admitted:
    """Admit ready dispatches into at most ``free`` run slots, in queue order."""
    out = Admitted()
    while free > 0:
        e = queue.pop_ready()
        if e is None:
            break
        job = jobs.get(e.job_id)
        led = state.controls.unlead(e.id) if state.controls.leading else None
        if led is not None and _outranked(queue, RATE_PREFIX + led, e):
            queue.park(RATE_PREFIX + led, e)  # its token goes to a more urgent waiter,
            if (first := queue.unpark_one(RATE_PREFIX + led)) is not None:
                state.controls.lead(led, first)  # which hands it on after its turn
            continue
        v = check(e, job, state, queue.parked, now)
        if v is RUN and job is not None:
            until = state.controls.wait(e, job, now)  # a rate limit's next token
            if until is not None:
                v = _rate_limited(state.controls, queue, e, until)
            elif (until := breakers.gate(job.executor, now)) is not None:
                v = Verdict("defer", "circuit-open", until=until)
            out.deferred += until is not None
        agent = None
        if v is RUN and job is not None and (need := state.agents.need(e, job)) is not None:
            agent = state.agents.choose(need)  # the best by Dispatch's score (assign.py)
            if agent is None:  # parked until an agent of that need frees up or appears
                state.agents.wait(e, need)
                v = Verdict("park", "unmatched", key=need.key)
            elif (held := state.controls.agent_held(agent.id)) is not None:
                agent, v = None, Verdict("park", "paused", key=held)
            elif (until := state.controls.agent_wait(agent.id, now)) is not None:
                agent, v = None, _rate_limited(state.controls, queue, e, until)
                out.deferred += 1
        if v.action == "run":
            assert job is not None
            queue.take(e.id)
            out.claims.append(state.agents.hold(e, agent) if agent is not None else e)
            state.hold(e.job_id, job.pool)
            state.controls.take(e, job, now)
            if agent is not None:
                state.controls.agent_take(agent.id, now)
            free -= 1
        elif v.action in ("park", "replace"):
            assert v.key is not None
            if v.action == "replace":
                out.replaced.append(e.job_id)
            queue.park(v.key, e)
        elif v.action == "defer":
            assert v.until is not None
            queue.defer(e, v.until)
        else:  # it ends without running: settled, and its free keys passed on
            queue.take(e.id)
            out.settles.append((e, settle(e.id, v)))
            for key in free_keys(e.job_id, job, state):
                out.unparked += queue.unpark(key)
        if led is not None and state.controls.leader(led) is None:
            out.unparked += queue.unpark(RATE_PREFIX + led)  # the next one waits on the clock
    return out


def _outranked(queue: ReadyQueue, key: str, e: Entry) -> bool:
    best = queue.best_parked(key)
    return best is not None and best < (e.priority, e.seq)


def _rate_limited(controls: Controls, queue: ReadyQueue, e: Entry, until: float) -> Verdict:
    """One dispatch per empty bucket waits on the clock (deferred to its next token);
    the others park behind it (``rate:<bucket>``, by priority), so a backlog behind a
    rate limit costs O(log n) per token, not a re-deferral of every waiter."""
    bucket = controls.rates.blocking
    leader = controls.leader(bucket)
    if leader is not None and leader != e.id and leader in queue:
        return Verdict("park", "rate-limited", key=RATE_PREFIX + bucket)
    controls.lead(bucket, e.id)
    return Verdict("defer", "rate-limited", until=until)
