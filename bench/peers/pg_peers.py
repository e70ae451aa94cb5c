"""Peers on PostgreSQL: pgqueuer and procrastinate, each as its users run it.

Each system is a `PgSystem`: ``install`` (its tables in the empty schema of the DSN's
``search_path``), ``producer`` (enqueue one job, or a batch, from the harness's
process) and ``work`` (the worker of one node, in a process of its own: see
`bench.pg_worker`). Every job is a no-op whose body calls ``done(t)``, ``t`` being the
``time.time()`` the producer stamped into its payload (None for unstamped jobs).

- **pgqueuer** (asyncpg): ``Queries.install``; ``Queries.enqueue`` of one entrypoint,
  or of lists (one statement per batch); the worker is a ``QueueManager`` on its own
  connection, ``run()`` with its defaults (batch size 10, LISTEN/NOTIFY wake-ups).
- **procrastinate** (psycopg 3): ``SchemaManager.apply_schema_async``; ``defer_async``
  and ``batch_defer_async``; the worker is ``run_worker_async(concurrency=WORKER_TASKS)``
  (async no-op tasks; its default is 1) with LISTEN/NOTIFY on, jobs kept (its default).
  It runs ~10x fewer jobs/s than the others here, so its phases are capped at
  ``max_jobs`` jobs (rates stay comparable; the note says so).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg

__all__ = ["PEERS", "WORKER_TASKS", "PgProducer", "PgSystem", "libpq_url"]

WORKER_TASKS = 10  # procrastinate's async tasks per worker (its default: 1)
ENTRYPOINT = "noop"

Done = Callable[[float | None], None]


class PgProducer(Protocol):
    async def enqueue_one(self, t: float | None) -> None: ...

    async def enqueue_batch(self, stamps: Sequence[float | None]) -> None: ...

    async def close(self) -> None: ...


class PgSystem(Protocol):
    name: str
    note: str
    max_jobs: int | None  # a cap on the jobs per phase (a slow peer), None: n

    async def install(self, dsn: str) -> None: ...

    async def producer(self, dsn: str) -> PgProducer: ...

    async def work(self, dsn: str, concurrency: int, done: Done, ready: Callable[[], None]) -> None:
        """Run one node's worker until cancelled; ``ready()`` once it takes jobs."""
        ...


def libpq_url(dsn: str) -> str:
    """``dsn`` with its ``search_path`` query turned into libpq's ``options`` (psycopg
    does not take server settings as query parameters, asyncpg does)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    path = query.pop("search_path", [None])[0]
    if path is not None:
        query["options"] = [f"-csearch_path={path}"]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True)))


def _stamp(t: float | None) -> bytes:
    return json.dumps({"t": t}).encode()


# -- pgqueuer ------------------------------------------------------------------------


class _PgqProducer:
    def __init__(self, conn: asyncpg.Connection) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        self._conn = conn
        self._q = Queries(AsyncpgDriver(conn))

    async def enqueue_one(self, t: float | None) -> None:
        await self._q.enqueue(ENTRYPOINT, _stamp(t), 0)

    async def enqueue_batch(self, stamps: Sequence[float | None]) -> None:
        k = len(stamps)
        await self._q.enqueue([ENTRYPOINT] * k, [_stamp(t) for t in stamps], [0] * k)

    async def close(self) -> None:
        await self._conn.close()


class Pgqueuer:
    name = "pgqueuer"
    note = "QueueManager.run() defaults (batch 10), one per node"
    max_jobs = None

    async def install(self, dsn: str) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        conn = await asyncpg.connect(dsn)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    async def producer(self, dsn: str) -> PgProducer:
        return _PgqProducer(await asyncpg.connect(dsn))

    async def work(self, dsn: str, concurrency: int, done: Done, ready: Callable[[], None]) -> None:
        from pgqueuer import AsyncpgDriver, Queries, QueueManager
        from pgqueuer.models import Job

        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            done(json.loads(job.payload or b"{}").get("t"))

        ready()
        try:
            await qm.run()
        finally:
            conn.terminate()


# -- procrastinate -------------------------------------------------------------------


def _procrastinate_app(dsn: str, done: Done | None = None) -> Any:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=libpq_url(dsn)))

    @app.task(name=ENTRYPOINT)
    async def noop(t: float | None = None) -> None:
        if done is not None:
            done(t)

    return app


class _ProcProducer:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._task = app.tasks[ENTRYPOINT]

    async def enqueue_one(self, t: float | None) -> None:
        await self._task.defer_async(t=t)

    async def enqueue_batch(self, stamps: Sequence[float | None]) -> None:
        await self._task.batch_defer_async(*({"t": t} for t in stamps))

    async def close(self) -> None:
        await self._app.close_async()


class Procrastinate:
    name = "procrastinate"
    note = f"run_worker_async(concurrency={WORKER_TASKS}), listen_notify on, one per node"
    max_jobs = 1_500  # ~300 jobs/s here: n = 5,000 would take minutes per phase

    async def install(self, dsn: str) -> None:
        app = _procrastinate_app(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def producer(self, dsn: str) -> PgProducer:
        app = _procrastinate_app(dsn)
        await app.open_async()
        return _ProcProducer(app)

    async def work(self, dsn: str, concurrency: int, done: Done, ready: Callable[[], None]) -> None:
        app = _procrastinate_app(dsn, done)
        async with app.open_async():
            ready()
            await app.run_worker_async(
                concurrency=WORKER_TASKS, wait=True, install_signal_handlers=False
            )


PEERS: dict[str, PgSystem] = {"pgqueuer": Pgqueuer(), "procrastinate": Procrastinate()}
