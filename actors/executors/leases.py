"""The lease board: the runs of the ``external`` executor waiting for or held by a
worker, and the claims waiting for one (long polls). A plain object shared by the run
actors (``actors/executors/external.py``, which offers and withdraws) and the HTTP
handlers (``runtime/http/workers.py``: claim, renew, report) of one event loop; it does
no I/O and reads time from the injected clock.

- ``offer`` hands a new lease to the first waiting claim that may take it
  (``can_claim``: the agent assignment chose, else capabilities), or keeps it;
- ``claim`` takes the oldest lease a worker may take, or waits up to ``wait`` s;
- ``check`` fences a report: the token must be the run's current lease, held by the
  caller, before its deadline. Anything else is ``StaleLease`` (recorded: a counter, a
  log line, a ``stale`` lease event, a note on the dispatch's current lease), or
  ``NotHolder`` (another agent's), or ``UnknownLease`` (the caller asks the store);
- ``close`` ends every waiting claim and wakes the executors of unclaimed leases (the
  daemon stops).

Events (``listeners``): ``lease`` with ``event`` claimed | progress | completed | failed
| expired | stale, ``run_id``, ``job``, ``agent``. The module is longer than most
because offers, claims and the fencing of reports change the same three tables (live
leases, ended leases, waiting claims): split apart, each part would reach into the
others' state.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

import anyio

from shepherd.actors.executors.base import ExecResult
from shepherd.actors.primitives.clock import Clock
from shepherd.store.errors import Conflict, ShepherdError

__all__ = ["Lease", "LeaseBoard", "NotHolder", "StaleLease", "UnknownLease", "can_claim"]

log = logging.getLogger("shepherd.leases")

_ENDED = 4096  # ended leases remembered, so that a late report is known stale at once
_STALE_NOTES = 20  # stale reports noted on one run's details


class StaleLease(Conflict):
    """A report with a token that is not the run's current lease (HTTP 409)."""


class NotHolder(ShepherdError):
    """The lease is held by (or pinned to) another agent (HTTP 403)."""


class UnknownLease(ShepherdError):
    """The board knows nothing of this run (the caller asks the store: 404 or 409)."""


class Lease:
    """One run on the board. Mutated only by the board; the executor reads it."""

    __slots__ = (
        "agent", "attempt", "changed", "claimed_at", "deadline", "dispatch_id", "hard",
        "holder", "idle", "job", "keepalive", "message", "needs", "outcome", "payload",
        "progress", "renewals", "run_id", "stale", "token",
    )  # fmt: skip

    def __init__(
        self,
        *,
        run_id: int,
        dispatch_id: int,
        job: str,
        payload: Any,
        attempt: int,
        needs: Collection[str],
        agent: str | None,
        idle: float,
        hard: float,
    ) -> None:
        self.run_id, self.dispatch_id, self.job = run_id, dispatch_id, job
        self.payload, self.attempt = payload, attempt
        self.needs = frozenset(needs)
        self.agent = agent  # pinned by assignment: only this agent may claim it
        self.idle, self.hard = idle, hard  # hard: the job's absolute deadline (monotonic)
        self.token = f"{run_id}.{os.urandom(16).hex()}"
        self.holder: str | None = None  # who claimed it ("" : a caller with no agent id)
        self.claimed_at: float | None = None  # wall
        self.deadline = hard  # monotonic; renewal deadline once claimed
        self.progress: int | None = None
        self.message: str | None = None
        self.renewals = 0
        self.outcome: ExecResult | None = None
        self.stale: list[dict[str, Any]] = []
        self.changed = anyio.Event()
        # the run's heartbeat (``ctx.heartbeat``): an accepted report pushes the run's
        # idle deadline out at once, so that the run ends with it, not timed out
        # while its executor is being woken
        self.keepalive: Callable[[], None] = lambda: None

    @property
    def claimed(self) -> bool:
        return self.holder is not None

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"agent": self.holder, "claimed_at": self.claimed_at}
        out["renewals"] = self.renewals
        if self.progress is not None:
            out["progress"] = self.progress
        if self.message is not None:
            out["message"] = self.message
        details: dict[str, Any] = {"lease": out}
        if self.stale:
            details["stale_reports"] = list(self.stale)
        return details

    def __repr__(self) -> str:
        return f"<Lease run={self.run_id} job={self.job!r} holder={self.holder!r}>"


def can_claim(lease: Lease, agent: str, caps: frozenset[str] | None) -> bool:
    """Pure: may ``agent`` (offering ``caps``; None: it did not say) claim ``lease``?"""
    if lease.claimed or lease.outcome is not None:
        return False
    if lease.agent:  # assignment chose the agent (it matched the capabilities)
        return lease.agent == agent
    if not lease.needs:
        return True
    return caps is not None and ("*" in caps or lease.needs <= caps)


class _Waiter:
    __slots__ = ("agent", "caps", "event", "lease")

    def __init__(self, agent: str, caps: frozenset[str] | None) -> None:
        self.agent, self.caps = agent, caps
        self.event = anyio.Event()
        self.lease: Lease | None = None


class LeaseBoard:
    """The leases of the runs in flight on the external executor, and the claims
    waiting for one (long polls). Events go to ``listeners`` (``kind, data``)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._live: dict[int, Lease] = {}  # run id → lease (offer order)
        self._by_dispatch: dict[int, Lease] = {}
        self._ended: OrderedDict[int, tuple[int, str]] = OrderedDict()  # run → (dispatch, why)
        self._waiters: list[_Waiter] = []
        self.closing = False
        # whether an agent may take one more run (a registered agent at its
        # ``max_concurrent``, degraded, draining or offline may not): the dispatcher's
        # agents table, set by the runtime; anyone, without one
        self.room: Callable[[str], bool] = lambda agent: True
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.counts = dict.fromkeys(
            ("offered", "claimed", "renewed", "completed", "failed", "expired", "stale"), 0
        )

    # -- the executor's side -------------------------------------------------------

    def offer(self, lease: Lease) -> None:
        self._live[lease.run_id] = lease
        self._by_dispatch[lease.dispatch_id] = lease
        self.counts["offered"] += 1
        for w in self._waiters:
            if w.lease is None and can_claim(lease, w.agent, w.caps) and self.room(w.agent):
                self._take(lease, w.agent)
                w.lease = lease
                w.event.set()
                return

    def withdraw(self, lease: Lease) -> None:
        """The run ended (an outcome, or its scope was cancelled): the lease is gone."""
        self._live.pop(lease.run_id, None)
        if self._by_dispatch.get(lease.dispatch_id) is lease:
            del self._by_dispatch[lease.dispatch_id]
        why = "reported" if lease.outcome is not None else "expired"
        self._ended[lease.run_id] = (lease.dispatch_id, why)
        while len(self._ended) > _ENDED:
            self._ended.popitem(last=False)
        if lease.outcome is None and lease.claimed:
            self.counts["expired"] += 1
            self._publish(lease, "expired")

    # -- the workers' side -----------------------------------------------------------

    def claim_nowait(self, agent: str, caps: frozenset[str] | None) -> Lease | None:
        if self.closing or not self.room(agent):
            return None
        for lease in self._live.values():
            if can_claim(lease, agent, caps):
                self._take(lease, agent)
                return lease
        return None

    async def claim(self, agent: str, caps: frozenset[str] | None, wait: float) -> Lease | None:
        """A lease for ``agent``, waiting up to ``wait`` seconds; None: nothing came
        (or the board is closing: the daemon stops)."""
        found = self.claim_nowait(agent, caps)
        if found is not None or wait <= 0 or self.closing:
            return found
        w = _Waiter(agent, caps)
        self._waiters.append(w)
        handed = False
        try:
            with anyio.CancelScope() as scope:
                self._clock.cancel_at(scope, self._clock.now() + wait)
                await w.event.wait()
            handed = w.lease is not None
            return w.lease
        finally:
            self._waiters.remove(w)
            if w.lease is not None and not handed:  # the caller went away: offer it again
                self._untake(w.lease)

    def adopt(self, dispatch_id: int, agent: str) -> Lease | None:
        """Dispatch's flow: the agent reports on a task by id. The current lease of
        that dispatch, claimed for ``agent`` when nobody has it; None: no run waits."""
        lease = self._by_dispatch.get(dispatch_id)
        if lease is None:
            return None
        if lease.claimed:
            self._check_holder(lease, agent)
            if lease.outcome is not None:
                kind = "task report"
                raise self.stale(lease.run_id, dispatch_id, agent, kind, "already reported")
            return lease
        if lease.agent and lease.agent != agent:
            raise NotHolder(f"task {dispatch_id} is assigned to agent {lease.agent!r}")
        self._take(lease, agent)
        return lease

    def of_dispatch(self, dispatch_id: int) -> Lease | None:
        return self._by_dispatch.get(dispatch_id)

    def check(self, run_id: int, token: str, agent: str, kind: str) -> Lease:
        """The lease ``token`` holds, or: ``StaleLease`` (recorded), ``NotHolder``,
        ``UnknownLease`` (not in memory: the caller asks the store)."""
        lease = self._live.get(run_id)
        if lease is not None and hmac.compare_digest(lease.token, token):
            if lease.claimed:
                self._check_holder(lease, agent)
            if lease.outcome is not None:  # reported; its run is finishing
                raise self.stale(run_id, lease.dispatch_id, agent, kind, "already reported")
            if self._clock.now() >= lease.deadline:
                raise self.stale(run_id, lease.dispatch_id, agent, kind, "the lease expired")
            return lease
        if lease is not None:
            why = "the token is not the run's current lease"
            raise self.stale(run_id, lease.dispatch_id, agent, kind, why)
        ended = self._ended.get(run_id)
        if ended is not None:
            why = (
                "the run was reported on"
                if ended[1] == "reported"
                else (
                    "the run's lease ended without a report (it expired, or the run was cancelled)"
                )
            )
            raise self.stale(run_id, ended[0], agent, kind, why)
        raise UnknownLease(f"no lease for run {run_id}")

    def renew(self, lease: Lease) -> None:
        lease.renewals += 1
        lease.deadline = min(self._clock.now() + lease.idle, lease.hard)
        self.counts["renewed"] += 1
        self._changed(lease)

    def progress(self, lease: Lease, progress: int | None, message: str | None) -> None:
        if progress is not None:
            lease.progress = progress
        if message is not None:
            lease.message = message
        self.renew(lease)
        self._publish(lease, "progress")

    def complete(self, lease: Lease, result: Any) -> None:
        lease.keepalive()
        lease.outcome = ExecResult(ok=True, result=result, details=lease.details())
        self.counts["completed"] += 1
        self._changed(lease)
        self._publish(lease, "completed")

    def fail(self, lease: Lease, error: str, retryable: bool) -> None:
        lease.keepalive()
        lease.outcome = ExecResult(ok=False, error=error, retry=retryable, details=lease.details())
        self.counts["failed"] += 1
        self._changed(lease)
        self._publish(lease, "failed")

    def stale(
        self, run_id: int, dispatch_id: int | None, agent: str, kind: str, why: str
    ) -> StaleLease:
        """Record a stale report and return the error to raise."""
        self.counts["stale"] += 1
        at = self._clock.wall()
        log.warning("lease.stale run=%d agent=%s report=%s: %s", run_id, agent or "-", kind, why)
        note = {"run_id": run_id, "agent": agent, "report": kind, "at": at, "why": why}
        current = self._by_dispatch.get(dispatch_id) if dispatch_id is not None else None
        if current is not None and len(current.stale) < _STALE_NOTES:
            current.stale.append(note)
            self._changed(current)
        data = {"run_id": run_id, "job": current.job if current else "", "agent": agent}
        self._emit("stale", data)
        return StaleLease(f"stale lease for run {run_id}: {why}; the report was refused")

    def close(self) -> None:
        """The daemon stops: waiting claims end now (nothing came), new ones get nothing;
        every lease's executor hears it (an unclaimed run goes back to the queue, a
        claimed one is kept alive until the shutdown grace ends: ``ExternalExecutor``)."""
        self.closing = True
        for w in self._waiters:
            w.event.set()
        for lease in list(self._live.values()):
            self._changed(lease)

    def deadline_wall(self, lease: Lease) -> float:
        return self._clock.wall() + max(0.0, lease.deadline - self._clock.now())

    def statistics(self) -> dict[str, int]:
        unclaimed = sum(1 for lease in self._live.values() if not lease.claimed)
        live = {"leases": len(self._live), "unclaimed": unclaimed, "waiting": len(self._waiters)}
        return {**live, **self.counts}

    # -- helpers --------------------------------------------------------------------------

    def _check_holder(self, lease: Lease, agent: str) -> None:
        if agent and lease.holder and agent != lease.holder:
            raise NotHolder(f"the lease of run {lease.run_id} is held by agent {lease.holder!r}")

    def _take(self, lease: Lease, agent: str) -> None:
        lease.holder = agent
        lease.claimed_at = self._clock.wall()
        lease.deadline = min(self._clock.now() + lease.idle, lease.hard)
        self.counts["claimed"] += 1
        self._changed(lease)
        self._publish(lease, "claimed")

    def _untake(self, lease: Lease) -> None:
        if lease.outcome is None and lease.run_id in self._live:
            lease.holder = lease.claimed_at = None
            lease.deadline = lease.hard
            self.counts["claimed"] -= 1
            self._changed(lease)

    def _changed(self, lease: Lease) -> None:
        event, lease.changed = lease.changed, anyio.Event()
        event.set()

    def _publish(self, lease: Lease, event: str) -> None:
        self._emit(event, {"run_id": lease.run_id, "job": lease.job, "agent": lease.holder or ""})

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener("lease", {**data, "event": event})
            except Exception as exc:  # a listener's fault must not fail a lease
                log.warning("lease event listener failed: %r", exc)

    def __repr__(self) -> str:
        return f"<LeaseBoard leases={len(self._live)} waiting={len(self._waiters)}>"
