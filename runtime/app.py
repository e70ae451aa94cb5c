"""``Runtime``: the public, embeddable API and the composition of the actor tree.

    async with Runtime.open(Config(database="app.db"), targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="noop", target="noop"))
        dispatch_id = await rt.enqueue("noop", {"x": 1})
        final = await rt.wait(dispatch_id)

The tree (DESIGN.md): root supervisor (rest_for_one) → store writer, dispatcher (with
its run supervisor), scheduler, ingest. Leaving the ``async with`` stops admitting, lets running
runs finish for ``shutdown_grace`` seconds, cancels the rest (their delivery guarantee
applies), stops the actors last-first and checkpoints the database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import TaskStatus

from actors.clock import Clock, RealClock
from actors.dispatcher import Dispatcher, DispatcherConfig
from actors.executors.base import Executor
from actors.executors.gateway import HttpClient
from actors.executors.python import PythonExecutor, PythonTarget
from actors.executors.shell import ShellExecutor
from actors.health import HealthMonitor
from actors.ingest import Ingest
from actors.mailbox import Mailbox, Reply, ask
from actors.messages import (
    Cancel,
    DispatcherMsg,
    Drain,
    Enqueued,
    Entry,
    Event,
    JobsChanged,
    OutcomeEvent,
    entry_from_dispatch,
    entry_from_new,
)
from actors.schedule import next_fires as _next_fires
from actors.scheduler import Outcome, Scheduler, SchedulerConfig, SchedulerMsg
from actors.supervisor import ActorEvent, ChildSpec, Supervisor
from actors.writer import StoreMsg, StoreWriter, write
from runtime.config import Config
from runtime.events import EventHub
from runtime.jobs import job_from_data, new_dispatch, save_op, validate_job
from runtime.messaging import MessagingMixin, gateway_executors
from store import queries
from store.errors import (
    ConfigError,
    MailboxClosed,
    MailboxFull,
    NotFound,
    ReadOnly,
    StoreError,
    SupervisorEscalation,
)
from store.models import (
    Dispatch,
    EnqueueRequest,
    JobRow,
    JobSpec,
    Run,
    to_builtins,
)
from store.ops import DeleteJob, InsertDispatches, NewDispatch, PurgeDead, RetryDead
from store.sqlite import SqliteStore

__all__ = ["Runtime"]

log = logging.getLogger("shepherd")

FINAL = ("done", "dead", "cancelled")


class Runtime(MessagingMixin):
    def __init__(
        self, cfg: Config, store: SqliteStore, clock: Clock, executors: dict[str, Executor]
    ):
        self.config = cfg
        self.store = store
        self.clock = clock
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.executors = executors
        self.events = EventHub()
        self.actor_events: list[ActorEvent] = []
        self._writer_mb: Mailbox[StoreMsg] = Mailbox("store", 100_000)
        self._dispatcher_mb: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 100_000)
        self._writer = self._writer_mb.address()
        self._dispatcher = self._dispatcher_mb.address()
        self._scheduler_mb: Mailbox[SchedulerMsg] = Mailbox("scheduler", 100_000)
        self._scheduler = self._scheduler_mb.address()
        self.lost_outcomes = 0
        self._jobs: dict[str, JobRow] = {}
        self._root: Supervisor | None = None
        self._actors: dict[str, Any] = {}
        self._init_messaging()

    # -- opening and closing -------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: Config | None = None,
        *,
        targets: Mapping[str, PythonTarget] | None = None,
        executors: Iterable[Executor] = (),
        clock: Clock | None = None,
    ) -> AsyncIterator[Runtime]:
        cfg = config or Config()
        lock = await _lock_database(cfg.database)
        try:
            store = await SqliteStore.open(
                cfg.database, synchronous=cfg.synchronous, busy_timeout=float(cfg.busy_timeout)
            )
        except BaseException:
            lock.close()
            raise
        python = PythonExecutor()
        for name, fn in (targets or {}).items():
            python.register(name, fn)
        table: dict[str, Executor] = {"python": python, "shell": ShellExecutor()}
        clock = clock or RealClock()
        http = HttpClient(max_connections=cfg.gateway.max_connections if cfg.gateway else 256)
        table.update(gateway_executors(cfg, http, clock))
        for ex in executors:
            table[ex.name] = ex
        rt = cls(cfg, store, clock or RealClock(), table)
        rt.http = http
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(rt._serve)
                for spec in cfg.jobs:
                    await rt.add_job(spec)
                try:
                    yield rt
                finally:
                    with anyio.CancelScope(shield=True):
                        await rt._stop()
        except BaseExceptionGroup as group:
            # The caller's own exception (or the tree's escalation) comes out as itself,
            # not wrapped in the task group's ExceptionGroup.
            escalation = _find(group, SupervisorEscalation)
            if escalation is not None:
                raise escalation from None
            leaves = _leaves(group)
            if len(leaves) == 1:
                raise leaves[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await rt._close_messaging()
                await store.close()
            lock.close()

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        writer = StoreWriter(self.store, self._writer_mb)
        dispatcher = Dispatcher(
            DispatcherConfig(
                instance=self.instance,
                concurrency=cfg.concurrency,
                pool_limits=dict(cfg.pools),
                data_dir=cfg.artifacts_dir,
                breaker_fail_max=cfg.breaker_fail_max,
                breaker_reset=float(cfg.breaker_reset),
            ),
            store=self.store,
            writer=self._writer_mb.address(),
            mailbox=self._dispatcher_mb,
            executors=self.executors,
            clock=self.clock,
            emit=self._publish,
            services={"runtime": self},
        )
        scheduler = Scheduler(
            SchedulerConfig(instance=self.instance),
            store=self.store,
            writer=self._writer_mb.address(),
            mailbox=self._scheduler_mb,
            dispatcher=self._dispatcher_mb.address(),
            clock=self.clock,
            emit=self._publish,
        )
        ingest = Ingest(cfg.database, self._dispatcher_mb.address(), self._scheduler_mb.address())
        health = HealthMonitor(
            instance=self.instance,
            clock=self.clock,
            dispatcher=self._dispatcher_mb.address(),
            writer=self._writer_mb.address(),
            executors=self.executors,
            snapshot=self.statistics,
            maintenance=self.store.checkpoint,
            interval=float(cfg.health_interval),
        )
        self._actors = {
            "store": writer,
            "dispatcher": dispatcher,
            "scheduler": scheduler,
            "health": health,
            "ingest": ingest,
        }
        router, router_spec = self._router_child()
        self._actors["router"] = router
        grace = float(cfg.shutdown_grace)
        self._root = Supervisor(
            "root",
            [
                ChildSpec(name="store", start=writer.run),
                # before the dispatcher: on shutdown (last-first) the router outlives the
                # drain and announces its outcomes; the price is that a router crash
                # restarts the dispatcher too (rest_for_one)
                router_spec,
                ChildSpec(
                    name="dispatcher",
                    start=dispatcher.run,
                    shutdown=grace + 10.0,
                    stop=lambda: self._dispatcher.tell(Drain(grace, Reply())),
                ),
                ChildSpec(name="scheduler", start=scheduler.run, shutdown=1.0),
                ChildSpec(name="health", start=health.run, shutdown=3.0, stop=health.stop),
                ChildSpec(name="ingest", start=ingest.run, shutdown=1.0),
            ],
            strategy="rest_for_one",
            intensity=cfg.restart_intensity,
            period=float(cfg.restart_period),
            clock=self.clock,
            on_event=self.actor_events.append,
        )
        await self._root.run(task_status=task_status)

    async def _stop(self) -> None:
        if self._root is not None:
            self._root.request_stop()

    def _publish(self, event: Event) -> None:
        self.events.publish(event)
        self._route(event)
        if isinstance(event, OutcomeEvent) and event.kind == "schedule" and event.final:
            try:  # never blocks the dispatcher; a lost outcome only skips error bookkeeping
                self._scheduler.tell(
                    Outcome(
                        job_id=event.job_id,
                        job=event.job,
                        dispatch_id=event.dispatch_id,
                        outcome=event.outcome,
                        final=event.final,
                        slot=event.slot,
                        kind=event.kind,
                        at=event.at,
                    )
                )
            except (MailboxFull, MailboxClosed):
                self.lost_outcomes += 1
                log.warning("scheduler missed the outcome of dispatch %s", event.dispatch_id)

    # -- executors -------------------------------------------------------------------

    def register(self, name: str, fn: PythonTarget) -> None:
        """Register an async callable as the ``python`` target ``name``."""
        python = self.executors["python"]
        assert isinstance(python, PythonExecutor)
        python.register(name, fn)

    # -- jobs --------------------------------------------------------------------------

    async def add_job(self, spec: JobSpec) -> JobRow:
        """Add a job, or replace the job of the same name. Its next fire time is
        recomputed when the schedule changed (or it was disabled), kept otherwise."""
        now = self.clock.wall()
        validate_job(spec, self.executors, now)
        previous = await self.store.read(queries.get_job, spec.name)
        await write(self._writer, save_op(spec, now, previous))
        return await self._job_changed(spec.name)

    async def update_job(self, name: str, **changes: Any) -> JobRow:
        """Change some fields of a job (validated as ``add_job``; the stored job is
        untouched on error). A changed schedule recomputes the next fire time."""
        row = await self.get_job(name)
        if changes.get("name", name) != name:
            raise ConfigError("a job cannot be renamed; add a new one", field="name")
        spec = job_from_data({**to_builtins(row.spec), **to_builtins(changes)})
        now = self.clock.wall()
        validate_job(spec, self.executors, now)
        await write(self._writer, save_op(spec, now, row))
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
        row = await self.get_job(name)
        await write(self._writer, DeleteJob(row.id, self.clock.wall()))
        self._jobs.pop(name, None)
        await self._jobs_changed([row.id])

    async def run_now(self, name: str, payload: dict[str, Any] | None = None) -> int:
        """Queue one run of ``name`` now, even if it is disabled; its schedule does not
        move. Returns the dispatch id."""
        req = EnqueueRequest(job=name, payload=payload, kind="run_now")
        return (await self.enqueue_many([req]))[0]

    async def next_fires(self, name: str, n: int = 5) -> list[float]:
        """The next ``n`` fire times of ``name`` (epoch seconds); [] if none."""
        row = await self.get_job(name)
        if row.next_run_at is None or n < 1:
            return []
        later = _next_fires(row.spec, row.next_run_at, n - 1, anchor=row.anchor)
        return [row.next_run_at, *later]

    async def get_job(self, name: str) -> JobRow:
        row = await self.store.read(queries.get_job, name)
        if row is None:
            raise NotFound(f"no job named {name!r}")
        self._jobs[row.name] = row
        return row

    async def list_jobs(self) -> list[JobRow]:
        return await self.store.read(queries.list_jobs)

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
        payload: dict[str, Any] | None = None,
        *,
        priority: str | None = None,
        not_before: float | datetime | None = None,
        delay: float | None = None,
        expires_at: float | datetime | None = None,
        expires_in: float | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Queue one run of ``job``; returns the dispatch id once it is committed."""
        now = self.clock.wall()
        nb = _epoch(not_before) if not_before is not None else (now + delay if delay else None)
        exp = (
            _epoch(expires_at)
            if expires_at is not None
            else (now + expires_in if expires_in else None)
        )
        req = EnqueueRequest(
            job=job,
            payload=payload,
            priority=priority,  # type: ignore[arg-type]
            not_before=nb,
            expires_at=exp,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
        return (await self.enqueue_many([req]))[0]

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[int]:
        """Queue many dispatches in one transaction; ids in the same order."""
        now = self.clock.wall()
        rows: list[NewDispatch] = []
        for i, req in enumerate(requests):
            row = await self._job(req.job)
            rows.append(new_dispatch(row, req, now, where=f"requests[{i}]"))
        result = await write(self._writer, InsertDispatches(rows, self.instance, now))
        ids: list[int] = []
        entries: list[Entry] = []
        for new, got in zip(rows, result, strict=True):
            if got is None:  # the idempotency key already has a dispatch
                existing = await self.store.read(
                    queries.dispatch_by_key, new.job_id, new.idempotency_key
                )
                ids.append(existing)
                continue
            dispatch_id, seq = got
            ids.append(dispatch_id)
            entries.append(entry_from_new(new, dispatch_id, seq))
        if entries:
            await self._dispatcher.send(Enqueued(entries))
        return ids

    # -- following dispatches ------------------------------------------------------

    async def wait(self, dispatch_id: int, timeout: float | None = None) -> Dispatch:
        """Wait until the dispatch is final (done, dead or cancelled) and return it."""
        event = self.events.waiter(dispatch_id)
        try:
            d = await self.dispatch(dispatch_id)
            if d.status in FINAL:
                return d
            with anyio.fail_after(timeout):
                await event.wait()
        finally:
            self.events.forget(dispatch_id, event)
        return await self.dispatch(dispatch_id)

    async def cancel(self, dispatch_id: int) -> str | None:
        """Cancel a queued dispatch (now) or a running one (its run is cancelled and
        recorded ``cancelled``). Returns the dispatch's status at the time of the call."""
        return await ask(self._dispatcher, lambda r: Cancel(dispatch_id, r))

    async def dispatch(self, dispatch_id: int) -> Dispatch:
        d = await self.store.read(queries.get_dispatch, dispatch_id)
        if d is None:
            raise NotFound(f"no dispatch {dispatch_id}")
        return d

    async def dispatches(
        self, *, status: str | None = None, job: str | None = None, limit: int = 100
    ) -> list[Dispatch]:
        return await self.store.read(queries.list_dispatches, status=status, job=job, limit=limit)

    async def runs(
        self,
        *,
        job: str | None = None,
        status: str | None = None,
        dispatch_id: int | None = None,
        limit: int = 100,
    ) -> list[Run]:
        return await self.store.read(
            queries.list_runs, job=job, status=status, dispatch_id=dispatch_id, limit=limit
        )

    async def run(self, run_id: int) -> Run:
        r = await self.store.read(queries.get_run, run_id)
        if r is None:
            raise NotFound(f"no run {run_id}")
        return r

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(self, *, job: str | None = None, limit: int = 100) -> list[Dispatch]:
        return await self.dispatches(status="dead", job=job, limit=limit)

    async def retry_dead(self, ids: Sequence[int]) -> list[int]:
        """Put dead letters back in the queue with fresh attempts."""
        done: list[int] = await write(
            self._writer, RetryDead(list(ids), self.clock.wall(), origin=self.instance)
        )
        entries = [entry_from_dispatch(await self.dispatch(i)) for i in done]
        if entries:
            await self._dispatcher.send(Enqueued(entries))
        return done

    async def purge_dead(
        self, ids: Sequence[int] | None = None, *, older_than: float | None = None
    ) -> int:
        before = self.clock.wall() - older_than if older_than is not None else None
        n: int = await write(
            self._writer, PurgeDead(list(ids) if ids is not None else None, before)
        )
        return n

    # -- events and introspection -------------------------------------------------

    def subscribe(self, *kinds: type, buffer: int = 10_000) -> Any:
        """``async with rt.subscribe(OutcomeEvent) as events: async for ev in events: …``"""
        return self.events.subscribe(*kinds, buffer=buffer)

    async def stats(self) -> dict[str, Any]:
        return await self.store.read(queries.stats)

    def statistics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instance": self.instance, "events": self.events.statistics()}
        if self._root is not None:
            out["supervisor"] = self._root.statistics()
        for name, actor in self._actors.items():
            out[name] = actor.statistics()
        out["store"] = {**out.get("store", {}), **self.store.statistics()}
        return out

    def __repr__(self) -> str:
        return f"<Runtime {self.config.database} {self.instance}>"


# -- helpers ----------------------------------------------------------------------------


def _find(group: BaseExceptionGroup[Any], kind: type[SupervisorEscalation]) -> Any:
    for exc in group.exceptions:
        if isinstance(exc, kind):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _find(exc, kind)
            if found is not None:
                return found
    return None


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out += _leaves(exc)
        else:
            out.append(exc)
    return out


def _epoch(value: float | datetime) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError("a datetime must carry a time zone", field="not_before")
        return value.timestamp()
    return float(value)


def _with(spec: JobSpec, **changes: Any) -> JobSpec:
    import msgspec

    return msgspec.structs.replace(spec, **changes)


async def _lock_database(path: str) -> IO[str]:
    """One runtime per database file: an exclusive lock held while the runtime is open.

    A short-lived shared lock (``shepherd status`` probing) is waited out for up to 1 s."""
    lock_path = f"{path}.lock"
    try:
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        # held for the runtime's lifetime; a local lock file, opened once at start
        f = open(lock_path, "a+")  # noqa: SIM115, ASYNC230
    except OSError as exc:
        raise ReadOnly(f"{path}: cannot write beside the database ({exc})") from None
    for attempt in range(21):
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 20:
                f.seek(0)
                owner = f.read().strip() or "another process"
                f.close()
                raise StoreError(f"{path}: already served by a runtime ({owner})") from None
            await anyio.sleep(0.05)
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f
