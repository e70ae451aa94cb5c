"""The ``external`` executor: a run performed by a worker outside the process, under a
fenced lease (README "External workers and leases").

A run of a job with ``executor = "external"`` is not performed here. Its run actor
offers it on the ``LeaseBoard`` (memory only; the run is already ``running`` in the
store, with its job's delivery guarantee) and waits. A worker claims it over HTTP
(``runtime/http/workers.py``) and gets a **lease**: the run, its payload and a fencing
**token** (``<run_id>.<32 hex>``, new for every run attempt), renewed by heartbeats
within the job's ``idle_timeout`` (default ``DEFAULT_IDLE_TIMEOUT``, 30 s), ended by
``complete`` (→ ``ok``) or ``fail`` (→ ``error``, retried unless ``retryable`` is false).

Lease life::

    offered ──claim──▶ claimed ──heartbeat / progress──▶ claimed (new deadline)
       │                  ├──complete──▶ ok            ├──fail──▶ error (retry or dead)
       │                  └──no renewal within idle_timeout──▶ timeout (retry policy)
       ├──job timeout / operator's cancel──▶ withdrawn (the run's outcome as usual)
       └──the daemon stops──▶ queued again, the attempt refunded (``Deferred``)

The idle deadline is the run actor's own (``default_idle_timeout`` below, or the job's
``idle_timeout``): every renewal is a ``ctx.heartbeat()``, and a lease that is not
renewed ends the run ``timeout`` through the normal finish path. While nobody has
claimed it, the executor keeps the run alive itself (only the job's ``timeout`` bounds
the wait); when the daemon stops, an unclaimed run goes back to the queue at once (a
claimed one waits for ``shutdown_grace``, then its delivery guarantee applies; the API
stops first, so nobody can renew its lease meanwhile, and the executor keeps it alive
itself, as an unclaimed one, rather than let its idle deadline end it). When
assignment chose an agent for the dispatch (``ctx.agent``), only that
agent may claim it; otherwise a claim must bring the job's ``capabilities``, and the
executor tells the runtime who took the run (``ctx.claimed``): the run and its dispatch
are that agent's in the store, its events and the agents registry.

Fencing: a report whose token is not the run's current lease (the lease expired and the
run was retried, the run was cancelled, or the daemon restarted and recovery finalized
or replayed the run) is refused (``StaleLease``, HTTP 409) and recorded: a counter, a
log line, a ``stale`` lease event, and a note in the details of the dispatch's current
run when it has one. The board (``actors/executors/leases.py``) is a plain object
shared by the run actors and the HTTP handlers of one event loop; it does no I/O.
"""

from __future__ import annotations

import anyio

from shepherd.actors.executors.base import ExecResult, RunContext
from shepherd.actors.executors.leases import Lease, LeaseBoard
from shepherd.actors.executors.specs import check_external
from shepherd.actors.primitives.clock import Clock
from shepherd.store.errors import Deferred
from shepherd.store.models import JobSpec

__all__ = ["DEFAULT_IDLE_TIMEOUT", "ExternalExecutor"]

DEFAULT_IDLE_TIMEOUT = 30.0  # seconds a lease lives without a heartbeat (job: idle_timeout)


class ExternalExecutor:
    """Offers each run on ``board`` and returns what its worker reports."""

    name = "external"
    default_idle_timeout = DEFAULT_IDLE_TIMEOUT  # the run actor's idle deadline

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.board = LeaseBoard(clock)

    def validate(self, spec: JobSpec) -> None:
        check_external(spec)

    async def execute(self, ctx: RunContext) -> ExecResult:
        idle = float(ctx.job.idle_timeout or DEFAULT_IDLE_TIMEOUT)
        now = self.clock.now()
        lease = Lease(
            run_id=ctx.run_id,
            dispatch_id=ctx.dispatch_id,
            job=ctx.job.name,
            payload=ctx.payload,
            attempt=ctx.attempt,
            needs=ctx.job.capabilities,
            agent=ctx.agent,
            idle=idle,
            hard=now + float(ctx.job.timeout),
        )
        lease.keepalive = ctx.heartbeat
        self.board.offer(lease)
        seen: tuple[float | None, int] = (None, -1)
        told = ctx.agent  # who the runtime knows has the run
        try:
            while True:
                # a worker took it (a task report may claim and complete at once)
                if lease.holder and lease.holder != told and lease.claimed_at is not None:
                    told = lease.holder
                    ctx.claimed(lease.holder, lease.claimed_at)
                if lease.outcome is not None:
                    return lease.outcome
                if self.board.closing and not lease.claimed:
                    # nobody has it and nobody can take it now: queued again for the
                    # next start, the attempt refunded (nothing ran)
                    # (1 ms: a deferral of 0 s means the 60 s default)
                    raise Deferred(0.001, "the daemon stops before a worker claimed the run")
                changed = lease.changed
                mark = (lease.claimed_at, lease.renewals)
                # nobody has it, or the daemon stops (the API went first: its worker
                # cannot renew it): the run is alive, until the shutdown grace ends
                waiting = not lease.claimed or self.board.closing
                if waiting:
                    ctx.heartbeat()
                elif mark != seen:  # claimed or renewed: the idle clock restarts
                    seen = mark
                    ctx.heartbeat()
                ctx.report(details=lease.details())
                with anyio.CancelScope() as scope:
                    if waiting:
                        self.clock.cancel_at(scope, self.clock.now() + idle / 3)
                    await changed.wait()
        finally:
            self.board.withdraw(lease)

    def statistics(self) -> dict[str, int]:
        return self.board.statistics()

    def __repr__(self) -> str:
        return f"<ExternalExecutor {self.board!r}>"
