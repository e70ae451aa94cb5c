"""The dispatcher's commit half: turn what the loop decided into one group of writes,
then act on what was committed (start run actors, requeue retries, emit events).
The checks that ride on the health monitor's tick (heartbeats, stale runs, breakers)
are the other mixin, ``actors/dispatcher_health.py``.

A mixin of ``actors.dispatcher.Dispatcher``: same actor, same state, split by
responsibility so each module stays readable. Decisions stay in the pure modules
(``actors.finalize``, ``actors.breaker``); this is the shell that performs them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from shepherd.actors import admission, breaker
from shepherd.actors.clock import Clock
from shepherd.actors.finalize import decide
from shepherd.actors.mailbox import Address
from shepherd.actors.messages import (
    DispatcherMsg,
    Entry,
    Event,
    OutcomeEvent,
    Poke,
    RunFinished,
    RunStarted,
    SlotRecord,
)
from shepherd.actors.run import RunOrder, run_actor
from shepherd.actors.runsup import RunSupervisor
from shepherd.actors.writer import StoreMsg, write_many
from shepherd.store import ledger
from shepherd.store.errors import StoreError
from shepherd.store.ledger import lineage_key
from shepherd.store.models import JobSpec
from shepherd.store.ops import (
    ClaimRun,
    ClaimRuns,
    FinishRun,
    FinishRuns,
    Settle,
    SettleQueued,
    WriteOp,
)

if TYPE_CHECKING:
    from shepherd.actors.dispatcher import DispatcherConfig

__all__ = ["CommitMixin"]

log = logging.getLogger("shepherd.dispatcher")


class _Running(msgspec.Struct):
    run_id: int
    entry: Entry
    attempt: int
    pool: str | None
    started: float = 0.0  # monotonic
    activity: float = 0.0  # monotonic, last heartbeat
    forced: bool = False  # the health check already cancelled it


class CommitMixin:
    # state owned by Dispatcher (declared here for the type checker)
    _cfg: DispatcherConfig
    _writer: Address[StoreMsg]
    _executors: Any
    _clock: Clock
    _emit: Callable[[Event], None]
    _services: dict[str, Any]
    _rng: random.Random
    _jobs: dict[int, JobSpec]
    _queued: dict[int, Entry]
    _running: dict[int, _Running]
    _adm: admission.AdmissionState
    _finished: list[RunFinished]
    _settles: list[tuple[Entry, Settle]]
    _claims: list[Entry]
    _beats: dict[int, float]
    _breakers: dict[str, breaker.Breaker]
    _runsup: RunSupervisor
    _self: Address[DispatcherMsg]
    counters: dict[str, int]

    def _add(self, e: Entry) -> None: ...  # defined by Dispatcher

    def _unpark(self, key: str) -> None: ...  # defined by Dispatcher

    if TYPE_CHECKING:  # defined by HealthMixin (actors/dispatcher_health.py)

        def _feed_breaker(self, executor: str, msg: RunFinished) -> None: ...

        def _heartbeat(self, dispatch_id: int, run_id: int, wall: float) -> None: ...

    async def _flush(self, now: float) -> None:
        finished, self._finished = self._finished, []
        settles, self._settles = self._settles, []
        claims, self._claims = self._claims, []
        ops: list[WriteOp] = []
        finals: list[tuple[RunFinished, _Running, FinishRun]] = []
        for msg in finished:
            r = self._running.get(msg.dispatch_id)
            if r is None or r.run_id != msg.run_id:
                self.counters["fenced"] += 1
                continue
            finals.append((msg, r, self._final(msg, r, now)))
        if finals:
            ops.append(FinishRuns([f for _, _, f in finals], now, origin=self._cfg.instance))
        if settles:
            ops.append(SettleQueued([s for _, s in settles], now))
        if claims:
            ops.append(
                ClaimRuns(
                    [
                        ClaimRun(
                            dispatch_id=e.id,
                            attempt=e.attempt + 1,
                            job_id=e.job_id,
                            idempotency_key=e.idempotency_key or lineage_key(e.id),
                            key_ttl=self._key_ttl(e.job_id),
                        )
                        for e in claims
                    ],
                    self._cfg.instance,
                    now,
                )
            )
        if not ops:
            return
        try:
            results = await write_many(self._writer, ops)
        except StoreError as exc:
            self._store_failed(exc, finished, settles, claims)
            await self._clock.sleep_until(self._clock.now() + 1.0)
            return
        results.reverse()
        if finals:
            self._after_finals(finals, results.pop(), now)
        if settles:
            self._after_settles(settles, results.pop(), now)
        if claims:
            self._after_claims(claims, results.pop(), now)

    def _store_failed(
        self,
        exc: StoreError,
        finished: list[RunFinished],
        settles: list[tuple[Entry, Settle]],
        claims: list[Entry],
    ) -> None:
        # Nothing of the batch was committed: keep the outcomes, put the rest back.
        self.counters["store_errors"] += 1
        log.error("dispatcher could not commit (will retry): %s", exc)
        self._finished = finished + self._finished
        for e, _ in settles:
            self._add(e)
        for e in claims:
            self._release(e)
            self._add(e)

    def _final(self, msg: RunFinished, r: _Running, now: float) -> FinishRun:
        job = self._jobs.get(r.entry.job_id)
        d = decide(r.entry, job, msg, now, attempt=r.attempt, rng=self._rng)
        return FinishRun(
            run_id=msg.run_id,
            dispatch_id=msg.dispatch_id,
            outcome=msg.outcome,
            next=d.next,
            error=msg.error,
            result=_encode(msg.result),
            reason=msg.reason,
            not_before=d.not_before,
            dead_reason=d.dead_reason,
            refund=d.refund,
            exit_code=msg.exit_code,
            signal=msg.signal,
            timed_out=msg.timed_out,
            stdout=msg.stdout,
            stderr=msg.stderr,
            details=_encode(msg.details),
        )

    def _after_finals(
        self, finals: list[tuple[RunFinished, _Running, FinishRun]], results: Any, now: float
    ) -> None:
        if isinstance(results, StoreError):
            log.error("finishing runs failed: %s", results)
            results = [None] * len(finals)
        for (msg, r, f), seq in zip(finals, results, strict=True):
            self._running.pop(msg.dispatch_id, None)
            self._beats.pop(msg.run_id, None)
            self._release(r.entry, r.pool)
            job = self._jobs.get(r.entry.job_id)
            if job is not None:
                self._feed_breaker(job.executor, msg)
            if seq is None:
                self.counters["fenced"] += 1
                continue
            self.counters[msg.outcome] = self.counters.get(msg.outcome, 0) + 1
            status = {"retry": "queued", "requeue": "queued"}.get(f.next, f.next)
            if f.next in ("retry", "requeue"):
                self.counters["retried"] += 1
                attempt = r.attempt - 1 if f.refund else r.attempt
                self._add(
                    msgspec.structs.replace(
                        r.entry, seq=seq, attempt=attempt, not_before=f.not_before or now
                    )
                )
            elif f.next == "dead":
                self.counters["dead"] += 1
            self._emit(
                _outcome(
                    r.entry,
                    self._job_name(r.entry.job_id),
                    msg.run_id,
                    r.attempt,
                    msg.outcome,
                    status,
                    now,
                    error=msg.error,
                    result=msg.result,
                    dead_reason=f.dead_reason,
                    next_attempt_at=f.not_before if status == "queued" else None,
                    deliver=msg.deliver,
                )
            )

    def _after_settles(self, settles: list[tuple[Entry, Settle]], results: Any, now: float) -> None:
        if isinstance(results, StoreError):
            log.error("settling dispatches failed: %s", results)
            return
        for (e, s), ok in zip(settles, results, strict=True):
            if not ok:
                continue
            name = self._job_name(e.job_id)
            if s.outcome == "skipped":
                self.counters["skipped"] += 1
                self._emit(
                    SlotRecord(job=name, reason=s.reason, dispatch_id=e.id, slot=e.slot, at=now)
                )
            self._emit(
                _outcome(
                    e,
                    name,
                    None,
                    e.attempt,
                    s.outcome,
                    s.status,
                    now,
                    error=s.reason,
                    dead_reason=s.reason if s.status == "dead" else None,
                )
            )

    def _after_claims(self, claims: list[Entry], results: Any, now: float) -> None:
        if isinstance(results, StoreError):
            log.error("claiming dispatches failed: %s", results)
            results = [None] * len(claims)
        for e, run_id in zip(claims, results, strict=True):
            job = self._jobs.get(e.job_id)
            if run_id == 0:  # its idempotency key is claimed by another run: recorded skipped
                self._release(e)
                self.counters["skipped"] += 1
                name = self._job_name(e.job_id)
                self._emit(
                    SlotRecord(
                        job=name, reason="idempotency-skip", dispatch_id=e.id, slot=e.slot, at=now
                    )
                )
                self._emit(
                    _outcome(
                        e,
                        name,
                        None,
                        e.attempt,
                        "skipped",
                        "done",
                        now,
                        error="idempotency key already claimed",
                    )
                )
                continue
            if run_id is None or job is None:
                self._release(e)  # someone else cancelled or claimed it meanwhile
                continue
            self.counters["admitted"] += 1
            attempt = e.attempt + 1
            mono = self._clock.now()
            self._running[e.id] = _Running(run_id, e, attempt, job.pool, mono, mono)
            order = RunOrder(
                run_id=run_id,
                dispatch_id=e.id,
                job_id=e.job_id,
                job=job,
                attempt=attempt,
                max_attempts=e.max_attempts,
                payload=e.payload if e.payload is not None else dict(job.payload),
                idempotency_key=e.idempotency_key or lineage_key(e.id),
                parent_run_id=e.parent_run_id,
            )
            executor = self._executors.get(job.executor)
            if executor is None:
                self._finished.append(
                    RunFinished(
                        run_id=run_id,
                        dispatch_id=e.id,
                        outcome="error",
                        retry=False,
                        error=f"no executor named {job.executor!r} in this runtime",
                    )
                )
                continue
            self._runsup.start_child(
                run_id,
                partial(
                    run_actor,
                    order=order,
                    executor=executor,
                    clock=self._clock,
                    report=self._self,
                    data_dir=self._cfg.data_dir,
                    services=self._services,
                    on_heartbeat=partial(self._heartbeat, e.id),
                ),
            )
            self._emit(
                RunStarted(dispatch_id=e.id, run_id=run_id, job=job.name, attempt=attempt, at=now)
            )
        if self._finished:
            self._self.tell(Poke("-"))  # outcomes decided here need a flush of their own

    def _release(self, e: Entry, pool: str | None = None) -> None:
        """Give back what admission counted for ``e`` and let a parked dispatch try."""
        job = self._jobs.get(e.job_id)
        pool = pool if pool is not None else (job.pool if job is not None else None)
        self._adm.running_by_job[e.job_id] -= 1
        if self._adm.running_by_job[e.job_id] <= 0:
            del self._adm.running_by_job[e.job_id]
        self._unpark(f"job:{e.job_id}")
        if pool:
            self._adm.running_by_pool[pool] -= 1
            self._unpark(f"pool:{pool}")

    def _key_ttl(self, job_id: int) -> float:
        job = self._jobs.get(job_id)
        return ledger.SHORT_TTL if job is not None and job.delete_after_run else ledger.DEFAULT_TTL

    def _job_name(self, job_id: int) -> str:
        job = self._jobs.get(job_id)
        return job.name if job is not None else f"#{job_id}"


def _encode(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        return msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError):
        return msgspec.json.encode(repr(value))


def _outcome(
    e: Entry,
    job: str,
    run_id: int | None,
    attempt: int,
    outcome: str,
    status: str,
    at: float,
    **kw: Any,
) -> OutcomeEvent:
    return OutcomeEvent(
        dispatch_id=e.id,
        job=job,
        run_id=run_id,
        attempt=attempt,
        outcome=outcome,
        status=status,
        final=status != "queued",
        at=at,
        job_id=e.job_id,
        kind=e.kind,
        slot=e.slot,
        **kw,
    )
