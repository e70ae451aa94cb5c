"""shepherd on PostgreSQL as a `bench.peers.pg_peers.PgSystem`, beside pgqueuer and
procrastinate (``bench.pg_bench``).

- ``install``: ``PgStore.open`` creates and migrates the schema; the no-op job is
  added with ``SaveJob``.
- producer: what another process writes, on the engine's own writer (``PgStore``):
  one committed ``InsertDispatches`` per job, or one of a whole batch; its commit's
  NOTIFY wakes every node (``store.postgres.listen``).
- ``work``: one embedded runtime per node (``Runtime.open``, concurrency
  ``CONCURRENCY``) with the no-op ``python`` target; the nodes share the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import new_dispatch, save_op
from shepherd.store.models import EnqueueRequest, JobRow, JobSpec
from shepherd.store.ops import InsertDispatches
from shepherd.store.postgres.engine import PgStore

__all__ = ["CONCURRENCY", "Shepherd"]

CONCURRENCY = 64
_JOB = "noop"
_ORIGIN = "bench-producer"

Done = Callable[[float | None], None]


class _Producer:
    def __init__(self, store: PgStore, job: JobRow) -> None:
        self._store = store
        self._job = job

    def _row(self, t: float | None, now: float) -> Any:
        req = EnqueueRequest(job=_JOB, payload={"t": t})
        return new_dispatch(self._job, req, now, where="")

    async def enqueue_one(self, t: float | None) -> None:
        now = time.time()
        await self._store.apply_one(InsertDispatches([self._row(t, now)], _ORIGIN, now))

    async def enqueue_batch(self, stamps: Sequence[float | None]) -> None:
        now = time.time()
        rows = [self._row(t, now) for t in stamps]
        await self._store.apply_one(InsertDispatches(rows, _ORIGIN, now))

    async def close(self) -> None:
        await self._store.close()


class Shepherd:
    name = "shepherd"
    note = f"Runtime.open(concurrency={CONCURRENCY}), one per node"
    max_jobs = None

    async def install(self, dsn: str) -> None:
        store = await PgStore.open(dsn)
        try:
            await store.apply_one(save_op(JobSpec(name=_JOB, target=_JOB), time.time()))
        finally:
            await store.close()

    async def producer(self, dsn: str) -> _Producer:
        store = await PgStore.open(dsn)
        job = await store.job(_JOB)
        assert job is not None, "install() adds the job"
        return _Producer(store, job)

    async def work(self, dsn: str, concurrency: int, done: Done, ready: Callable[[], None]) -> None:
        async def noop(ctx: Any) -> None:
            payload = ctx.payload if isinstance(ctx.payload, dict) else {}
            done(payload.get("t"))

        cfg = Config(database=dsn, concurrency=concurrency)
        async with Runtime.open(cfg, targets={_JOB: noop}):
            ready()
            await anyio.sleep_forever()
