"""The run table: the runs this dispatcher has started and not yet finalized.

One ``Running`` per dispatch that has a run in flight (keyed by dispatch id), with its
monotonic start and last-heartbeat times. The table also

- collects heartbeats (``heartbeat``) until the health monitor's ``Tick`` writes them
  in one op (``take_beats``);
- fences late reports: ``current(msg)`` is the run a ``RunFinished`` belongs to, or
  None when that run was already finalized or superseded;
- is the backstop for the run actors' own deadlines (``stale``): a run past its idle or
  absolute deadline by ``margin`` is cancelled; one that still has not reported after
  another margin is finalized as ``timeout`` (its late report is then fenced).

A plain class, no I/O; monotonic ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import msgspec

from shepherd.actors.messages import Entry, RunFinished
from shepherd.actors.run import RunOrder
from shepherd.store.keys import lineage_key
from shepherd.store.models import JobSpec

__all__ = ["RunTable", "Running", "run_order"]


class Running(msgspec.Struct):
    run_id: int
    entry: Entry
    attempt: int
    pool: str | None
    started: float = 0.0  # monotonic
    activity: float = 0.0  # monotonic, last heartbeat
    forced: bool = False  # the stale check already cancelled it


def run_order(e: Entry, job: JobSpec, run_id: int, attempt: int) -> RunOrder:
    """What the run actor needs to run attempt ``attempt`` of ``e``."""
    return RunOrder(
        run_id=run_id,
        dispatch_id=e.id,
        job_id=e.job_id,
        job=job,
        attempt=attempt,
        max_attempts=e.max_attempts,
        payload=e.payload if e.payload is not None else dict(job.payload),
        idempotency_key=e.idempotency_key or lineage_key(e.id),
        parent_run_id=e.parent_run_id,
        agent=e.agent,
        agent_model=e.agent_model,
    )


class RunTable:
    __slots__ = ("_beats", "_runs")

    def __init__(self) -> None:
        self._runs: dict[int, Running] = {}
        self._beats: dict[int, float] = {}  # run id → wall time of its last heartbeat

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, dispatch_id: object) -> bool:
        return dispatch_id in self._runs

    def __iter__(self) -> Iterator[Running]:
        return iter(list(self._runs.values()))

    def add(self, r: Running) -> None:
        self._runs[r.entry.id] = r

    def current(self, msg: RunFinished) -> Running | None:
        """The run ``msg`` reports on, if it is still the dispatch's current run."""
        r = self._runs.get(msg.dispatch_id)
        return r if r is not None and r.run_id == msg.run_id else None

    def get(self, dispatch_id: int) -> Running | None:
        return self._runs.get(dispatch_id)

    def remove(self, r: Running) -> None:
        """The run was finalized: forget it and its unwritten heartbeat."""
        self._runs.pop(r.entry.id, None)
        self._beats.pop(r.run_id, None)

    def by_run(self, run_id: int) -> Running | None:
        for r in self._runs.values():
            if r.run_id == run_id:
                return r
        return None

    def of_job(self, job_id: int) -> list[int]:
        """The run ids of ``job_id``'s runs in flight."""
        return [r.run_id for r in self._runs.values() if r.entry.job_id == job_id]

    def heartbeat(self, dispatch_id: int, run_id: int, now: float, wall: float) -> None:
        r = self._runs.get(dispatch_id)
        if r is not None and r.run_id == run_id:
            r.activity = now
            self._beats[run_id] = wall

    def take_beats(self) -> list[tuple[int, float]]:
        """The heartbeats collected since the last call, ``(run id, wall)``."""
        if not self._beats:
            return []
        beats, self._beats = self._beats, {}
        return list(beats.items())

    def stale(
        self, jobs: Mapping[int, JobSpec], now: float, margin: float
    ) -> tuple[list[int], list[RunFinished]]:
        """Runs to cancel (first margin past the deadline) and the outcomes to finalize
        in their place (second margin). A cancelled run is marked ``forced``."""
        cancel: list[int] = []
        finish: list[RunFinished] = []
        for r in self._runs.values():
            job = jobs.get(r.entry.job_id)
            if job is None:
                continue
            limit = r.started + float(job.timeout)
            if job.idle_timeout:
                limit = min(limit, r.activity + float(job.idle_timeout))
            if now < limit + margin:
                continue
            if not r.forced:
                r.forced = True
                cancel.append(r.run_id)
            elif now >= limit + 2 * margin:
                finish.append(
                    RunFinished(
                        run_id=r.run_id,
                        dispatch_id=r.entry.id,
                        outcome="timeout",
                        timed_out=True,
                        reason="stale",
                        error=f"no outcome {2 * margin:g}s past its deadline (stale)",
                    )
                )
        return cancel, finish

    def statistics(self) -> dict[str, int]:
        return {"running": len(self._runs), "beats": len(self._beats)}

    def __repr__(self) -> str:
        return f"<RunTable running={len(self._runs)}>"
