"""The dispatcher's run-health half and its statistics: heartbeats from run actors, the
stale-run backstop that rides on the health monitor's tick, run actors that died, and
the executor circuit breakers fed by outcomes and probes.

A mixin of ``actors.dispatcher.Dispatcher``, split from ``actors/dispatcher_commit.py``:
same actor, same state. The breaker maths is the pure module ``actors.breaker``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from shepherd.actors import admission, breaker
from shepherd.actors.clock import Clock
from shepherd.actors.mailbox import Address, Mailbox
from shepherd.actors.messages import DispatcherMsg, Entry, RunFinished
from shepherd.actors.runsup import RunSupervisor
from shepherd.store.models import JobSpec

if TYPE_CHECKING:
    from shepherd.actors.dispatcher import DispatcherConfig
    from shepherd.actors.dispatcher_commit import _Running

__all__ = ["HealthMixin"]


class HealthMixin:
    # state owned by Dispatcher (declared here for the type checker)
    _cfg: DispatcherConfig
    _clock: Clock
    _jobs: dict[int, JobSpec]
    _running: dict[int, _Running]
    _finished: list[RunFinished]
    _beats: dict[int, float]
    _breakers: dict[str, breaker.Breaker]
    _runsup: RunSupervisor
    _self: Address[DispatcherMsg]
    counters: dict[str, int]
    _mailbox: Mailbox[DispatcherMsg]
    _queued: dict[int, Entry]
    _ready: list[tuple[int, float, int, int]]
    _delayed: list[tuple[float, int, int]]
    _draining: bool
    _adm: admission.AdmissionState
    recovered: int
    recovery_seconds: float

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            "queued": len(self._queued),
            "ready": len(self._ready),
            "delayed": len(self._delayed),
            "parked": len(self._adm.parked),
            "running": len(self._running),
            "draining": self._draining,
            "recovered": self.recovered,
            "recovery_seconds": round(self.recovery_seconds, 4),
            "breakers": {
                name: {"state": b.state, "failures": b.failures}
                for name, b in self._breakers.items()
            },
            **self.counters,
        }

    def __repr__(self) -> str:
        return (
            f"<Dispatcher queued={len(self._queued)} running={len(self._running)} "
            f"admitted={self.counters['admitted']}>"
        )

    def _new_breaker(self) -> breaker.Breaker:
        return breaker.Breaker(fail_max=self._cfg.breaker_fail_max, reset=self._cfg.breaker_reset)

    def _feed_breaker(self, executor: str, msg: RunFinished) -> None:
        gateway_failure = msg.reason == "deferred" or bool(
            (msg.details or {}).get("gateway_failure")
        )
        b = self._breakers.get(executor)
        if gateway_failure:
            self._breakers[executor] = breaker.on_failure(
                b or self._new_breaker(), self._clock.wall()
            )
        elif b is not None and msg.outcome == "ok":
            self._breakers[executor] = breaker.on_success(b, self._clock.wall())
        elif b is not None and b.trial:  # a trial that failed for its own reasons
            self._breakers[executor] = msgspec.structs.replace(b, trial=False)

    def _heartbeat(self, dispatch_id: int, run_id: int, wall: float) -> None:
        r = self._running.get(dispatch_id)
        if r is not None and r.run_id == run_id:
            r.activity = self._clock.now()
            self._beats[run_id] = wall

    def _check_stale(self) -> None:
        """Backstop for the run actors' own deadlines: a run past its idle or absolute
        deadline by ``stale_margin`` is cancelled; one that still has not reported after
        another margin is finalized here as ``timeout`` (a late report is then fenced)."""
        now = self._clock.now()
        margin = self._cfg.stale_margin
        for r in list(self._running.values()):
            job = self._jobs.get(r.entry.job_id)
            if job is None:
                continue
            limit = r.started + float(job.timeout)
            if job.idle_timeout:
                limit = min(limit, r.activity + float(job.idle_timeout))
            if now < limit + margin:
                continue
            if not r.forced:
                r.forced = True
                self.counters["stale"] += 1
                self._runsup.cancel(r.run_id, "stale")
            elif now >= limit + 2 * margin:
                self._finished.append(
                    RunFinished(
                        run_id=r.run_id,
                        dispatch_id=r.entry.id,
                        outcome="timeout",
                        timed_out=True,
                        reason="stale",
                        error=f"no outcome {2 * margin:g}s past its deadline (stale)",
                    )
                )

    def _run_actor_died(self, run_id: int, exc: BaseException) -> None:
        for r in self._running.values():
            if r.run_id == run_id:
                self._self.tell(
                    RunFinished(
                        run_id=run_id,
                        dispatch_id=r.entry.id,
                        outcome="crashed",
                        error=f"run actor died: {exc!r}",
                    )
                )
                return
