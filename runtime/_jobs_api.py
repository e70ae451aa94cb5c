"""The jobs side of ``Runtime``: add, update, enable, remove and run jobs, their next
fire times, and enqueueing dispatches.

``JobsApi`` is a plain collaborator the ``Runtime`` façade holds: it owns the cache of
job rows it looked up (``enqueue`` needs a job's id and defaults) and sends
``JobsChanged`` to the dispatcher and the scheduler (and ``forget_job`` to the router)
when a job changes. The module is a little longer than most because ``enqueue``,
``enqueue_many`` and the enqueue socket's ``enqueue_each`` share its checks and commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import anyio
import msgspec

from shepherd.actors.executors.base import Executor
from shepherd.actors.ingest_wire import EnqueueItem
from shepherd.actors.messages import (
    DispatcherMsg,
    Enqueued,
    Entry,
    JobsChanged,
    Poke,
    SchedulerMsg,
    entry_from_new,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.scheduler.cron import next_fires as _next_fires
from shepherd.actors.writer import CommitNow, StoreMsg, write, write_many_now
from shepherd.runtime._chains import config_error, parents_first
from shepherd.runtime.jobs import (
    check_enqueue,
    check_payload,
    job_from_data,
    keep_ended,
    new_dispatch,
    plain_payload,
    save_op,
    validate_job,
)
from shepherd.store.errors import (
    ConfigError,
    Conflict,
    MailboxClosed,
    MailboxFull,
    NotFound,
    ShepherdError,
    StoreError,
)
from shepherd.store.models import EnqueueRequest, JobRow, JobSpec, to_builtins
from shepherd.store.ops import DeleteJob, InsertDispatches, NewDispatch, SaveJob
from shepherd.store.protocol import Store

__all__ = ["JobsApi", "build_request"]


class JobsApi:
    def __init__(
        self,
        *,
        clock: Clock,
        executors: dict[str, Executor],
        store: Store,
        instance: str,
        writer: Address[StoreMsg],
        dispatcher: Address[DispatcherMsg],
        scheduler: Address[SchedulerMsg],
        forget_job: Callable[[int], None],
        approvals: Address[Poke] | None = None,
        news: Callable[[list[tuple[NewDispatch, int]], float], Awaitable[None]] | None = None,
    ) -> None:
        self.clock = clock
        self.executors = executors
        self.store = store
        self.instance = instance
        self._writer = writer
        self.commit_now: CommitNow | None = None  # the serving writer's (actors.writer)
        self._dispatcher = dispatcher
        self._scheduler = scheduler
        self._forget_job = forget_job
        self._approvals = approvals  # told when an insert held a dispatch for approval
        self._news = news  # told the dispatches an insert held (runtime.events.held_news)
        self._jobs: dict[str, JobRow] = {}
        self.jobs_loaded = anyio.Event()  # set once the config's jobs are added

    async def add_config_jobs(self, specs: Sequence[JobSpec]) -> None:
        """Add the config's jobs at start, then set ``jobs_loaded`` (the spool waits for
        it: its files may name them)."""
        index = {s.name: i for i, s in enumerate(specs)}
        for spec in parents_first(specs):  # a child may be listed before its parent
            try:
                await self.add_job(spec)
            except ConfigError as exc:  # the graph is checked here, against the store
                where = f"config: jobs[{index[spec.name]}] ({spec.name})"
                raise ConfigError(str(exc), field=where) from None
        self.jobs_loaded.set()

    # -- jobs --------------------------------------------------------------------------

    async def add_job(self, spec: JobSpec) -> JobRow:
        """Add a job, or replace the job of the same name. Its next fire time is
        recomputed when the schedule changed (or it was disabled), kept otherwise."""
        now = self.clock.wall()
        previous = await self.store.job(spec.name)
        spec = keep_ended(spec, previous, now)
        validate_job(spec, self.executors, now, previous=previous.spec if previous else None)
        await self._write_job(save_op(spec, now, previous))
        return await self._job_changed(spec.name)

    async def update_job(self, name: str, /, **changes: Any) -> JobRow:
        """Change some fields of a job (validated as ``add_job``; the stored job is
        untouched on error). A changed schedule recomputes the next fire time;
        ``parent=None`` makes a child a root (its trigger fields are cleared too)."""
        row = await self.get_job(name)
        if changes.get("name", name) != name:
            raise ConfigError("a job cannot be renamed; add a new one", field="name")
        data = {**to_builtins(row.spec), **to_builtins(changes)}
        if "parent" in changes and changes["parent"] is None:  # made a root: no trigger
            for key in ("trigger_on", "trigger_condition", "trigger_delay"):
                if key not in changes:
                    data.pop(key, None)
        spec = job_from_data(data)
        now = self.clock.wall()
        validate_job(spec, self.executors, now, previous=row.spec)
        await self._write_job(save_op(spec, now, row))
        return await self._job_changed(name)

    async def set_enabled(self, name: str, enabled: bool) -> JobRow:
        """Re-enabling recomputes the next fire time; disabling clears it."""
        row = await self.get_job(name)
        now = self.clock.wall()
        spec = row.spec if row.spec.enabled == enabled else _with(row.spec, enabled=enabled)
        await write(self._writer, save_op(spec, now, row))
        return await self._job_changed(name)

    async def enable(self, name: str) -> JobRow:
        return await self.set_enabled(name, True)

    async def disable(self, name: str) -> JobRow:
        return await self.set_enabled(name, False)

    async def remove_job(self, name: str) -> None:
        """Remove ``name``; refused (ConfigError naming them) while jobs name it their
        parent."""
        row = await self.get_job(name)
        await self._write_job(DeleteJob(row.id, self.clock.wall(), refuse_parent=True))
        self._jobs.pop(name, None)
        await self._jobs_changed([row.id])

    async def retire_job(self, name: str) -> None:
        """Disable, then remove ``name`` (a watchdog's self-destruct, through its host)."""
        await self.set_enabled(name, False)
        await self.remove_job(name)

    async def run_now(self, name: str, payload: dict[str, Any] | None = None) -> int:
        """Queue one run of ``name`` now, even if it is disabled; its schedule does not
        move. Returns the dispatch id."""
        req = plain_payload(EnqueueRequest(job=name, payload=payload, kind="run_now"))
        return (await self._insert([req], wheres=[""]))[0]

    async def next_fires(self, name: str, n: int = 5) -> list[float]:
        """The next ``n`` fire times of ``name`` (epoch seconds); [] if none."""
        row = await self.get_job(name)
        if row.next_run_at is None or n < 1:
            return []
        later = _next_fires(row.spec, row.next_run_at, n - 1, anchor=row.anchor)
        return [row.next_run_at, *later]

    async def get_job(self, name: str) -> JobRow:
        row = await self.store.job(name)
        if row is None:
            raise NotFound(f"no job named {name!r}")
        self._jobs[row.name] = row
        return row

    def forget_jobs(self) -> None:
        """Drop every job held for the enqueue path: another process changed jobs (the
        ingest actor hears it), so the next enqueue reads its job from the store."""
        self._jobs.clear()

    async def list_jobs(self) -> list[JobRow]:
        return await self.store.jobs()

    async def _write_job(self, op: SaveJob | DeleteJob) -> None:
        """A job write; the store's check of a chain's graph (in the same transaction)
        fails it with a ConfigError naming the field, raised here as such."""
        try:
            await write(self._writer, op)
        except StoreError as exc:
            if config_error(exc) is exc:
                raise
            raise config_error(exc) from None

    async def _job_changed(self, name: str) -> JobRow:
        row = await self.get_job(name)
        await self._jobs_changed([row.id])
        return row

    async def _jobs_changed(self, ids: list[int]) -> None:
        for job_id in ids:
            self._forget_job(job_id)
        await self._dispatcher.send(JobsChanged(ids))
        await self._scheduler.send(JobsChanged(ids))

    async def _job(self, name: str) -> JobRow:
        row = self._jobs.get(name)
        return row if row is not None else await self.get_job(name)

    # -- enqueue -----------------------------------------------------------------------

    async def enqueue(
        self,
        job: str,
        payload: dict[str, Any] | msgspec.Struct | None = None,
        *,
        priority: str | None = None,
        not_before: float | datetime | None = None,
        delay: float | None = None,
        expires_at: float | datetime | None = None,
        expires_in: float | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        capabilities: list[str] | None = None,
        owner: str | None = None,
    ) -> int:
        """Queue one run of ``job``; returns the dispatch id once it is committed. A
        payload its python target's declared type refuses is an error naming the field
        (``payload.to: Expected str, got int``), and nothing is stored. ``capabilities``
        (on top of the job's) and ``owner`` steer which agent it is assigned to."""
        req = self._request(
            job,
            payload,
            priority=priority,
            not_before=not_before,
            delay=delay,
            expires_at=expires_at,
            expires_in=expires_in,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            capabilities=capabilities,
            owner=owner,
        )
        return (await self._insert([req], wheres=[""]))[0]

    def _request(self, job: str, payload: Any, **opts: Any) -> EnqueueRequest:
        return build_request(self.clock.wall(), job, payload, **opts)

    async def enqueue_each(
        self, items: Sequence[EnqueueItem]
    ) -> list[tuple[int, bool] | ShepherdError]:
        """``enqueue`` for each of ``items`` (the enqueue socket's requests), committed in
        one transaction: (dispatch id, duplicate) per item, duplicate when it is its
        idempotency key's existing dispatch, or the error ``enqueue`` would have raised
        for it (one bad item does not fail the others)."""
        now = self.clock.wall()
        out: list[tuple[int, bool] | ShepherdError] = []
        rows: list[NewDispatch] = []
        for item in items:
            try:
                req = self._request(
                    item.job,
                    item.payload,
                    **item.options(),
                )
                rows.append(await self._row(req, "", now))  # each item alone: no index
            except (ConfigError, NotFound) as exc:
                out.append(exc)
                continue
            out.append((len(rows) - 1, False))  # its index in rows, replaced below
        valid = [i for i, got in enumerate(out) if isinstance(got, tuple)]
        if not rows:
            return out
        ids: list[tuple[int, bool] | ShepherdError] = []
        try:
            dups: list[bool] = []
            ids.extend(zip(await self._commit(rows, now, dups), dups, strict=True))
        except (ConfigError, NotFound, Conflict) as exc:
            ids = [exc] if len(rows) == 1 else []
            for row in rows if len(rows) > 1 else ():  # one row refused: the others go in
                try:
                    dups = []
                    ids.extend(zip(await self._commit([row], now, dups), dups, strict=True))
                except (ConfigError, NotFound, Conflict) as one:
                    ids.append(one)
        for i, got in zip(valid, ids, strict=True):
            out[i] = got
        return out

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[int]:
        """Queue many dispatches in one transaction; ids in the same order. Payloads
        are checked as ``enqueue`` checks them (``requests[3].payload.to: ...``)."""
        reqs = [plain_payload(req) for req in requests]
        return await self._insert(reqs, wheres=[f"requests[{i}]" for i in range(len(reqs))])

    async def _insert(self, requests: Sequence[EnqueueRequest], *, wheres: list[str]) -> list[int]:
        now = self.clock.wall()
        rows = [await self._row(req, wheres[i], now) for i, req in enumerate(requests)]
        return await self._commit(rows, now)

    async def _row(self, req: EnqueueRequest, where: str, now: float) -> NewDispatch:
        """The row of ``req``; errors name its fields under ``where`` (``requests[3]``
        for an item of ``enqueue_many``, nothing for a request alone)."""
        row = await self._job(req.job)
        new = new_dispatch(row, req, now, where=where)
        check_payload(row.spec, req.payload, self.executors, field=f"{where}.payload".lstrip("."))
        return new

    async def _commit(
        self, rows: list[NewDispatch], now: float, dups: list[bool] | None = None
    ) -> list[int]:
        """Insert ``rows`` in one transaction, tell the dispatcher; with ``dups``, append
        whether each row was its producer key's existing dispatch."""
        op = InsertDispatches(rows, self.instance, now)
        (result,) = await write_many_now(self._writer, [op], self.commit_now)
        ids: list[int] = []
        entries: list[Entry] = []
        held: list[tuple[NewDispatch, int]] = []
        for new, got in zip(rows, result, strict=True):
            if dups is not None:
                dups.append(isinstance(got, int))
            if isinstance(got, int):  # the dispatch the producer's key is bound to
                ids.append(got)
                continue
            dispatch_id, seq = got
            ids.append(dispatch_id)
            if seq == 0:  # held by its job's approval gate: not for the dispatcher
                held.append((new, dispatch_id))
                continue
            entries.append(entry_from_new(new, dispatch_id, seq))
        if entries:
            await self._dispatcher.send(Enqueued(entries))
        if held and self._approvals is not None:
            with contextlib.suppress(MailboxFull, MailboxClosed):  # one waiting covers it
                self._approvals.tell(Poke(approvals=True))
        if held and self._news is not None:
            await self._news(held, now)
        return ids


def build_request(
    now: float,
    job: str,
    payload: dict[str, Any] | msgspec.Struct | None,
    *,
    priority: str | None,
    not_before: float | datetime | None,
    delay: float | None,
    expires_at: float | datetime | None,
    expires_in: float | None,
    max_attempts: int | None,
    idempotency_key: str | None,
    capabilities: list[str] | None,
    owner: str | None,
) -> EnqueueRequest:
    """The ``EnqueueRequest`` of ``Runtime.enqueue``'s arguments at wall time ``now``
    (``delay`` / ``expires_in`` added to it), checked as ``enqueue`` checks it."""
    # the relative values first (they are added to now), then the request
    check_enqueue(EnqueueRequest(job=job), delay=delay, expires_in=expires_in)
    nb = _epoch(not_before) if not_before is not None else (now + delay if delay else None)
    exp = (
        _epoch(expires_at) if expires_at is not None else (now + expires_in if expires_in else None)
    )
    req = EnqueueRequest(
        job=job,
        payload=payload,  # type: ignore[arg-type]  # a Struct: plain_payload()
        priority=priority,  # type: ignore[arg-type]
        not_before=nb,
        expires_at=exp,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        capabilities=capabilities,
        owner=owner,
    )
    req = plain_payload(req)
    check_enqueue(req)  # errors name the argument (enqueue_many names requests[i])
    return req


def _epoch(value: float | datetime) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError("a datetime must carry a time zone", field="not_before")
        return value.timestamp()
    return float(value)


def _with(spec: JobSpec, **changes: Any) -> JobSpec:
    return msgspec.structs.replace(spec, **changes)
