"""``shepherd-recovery``: start-up after a crash, on a big queue (issue 4).

The database is built without a runtime serving it: `QUEUED` queued no-op dispatches,
plus `ORPHANS` dispatches claimed by a dead instance (``InsertDispatches`` then
``ClaimRuns`` under another instance name), so each has a run left ``running``; half
of them belong to an ``at-least-once`` job (replayed once), half to an
``at-most-once`` job (dead-lettered as ``crashed``). Then, timed from just before
``Runtime.open``:

- ``recovery_to_open``: until ``Runtime.open`` returns. The dispatcher resolves the
  orphans and loads the queue before it reports started, so this is when all orphans
  are resolved; checked: ``statistics()["dispatcher"]["recovered"]`` equals `ORPHANS`
  and no run of the dead instance is left ``running``.
- ``recovery_to_first_dispatch``: until the first run starts (clock read inside the
  target). Goal: under 1 s.
- ``recovery_dispatcher_seconds``: the dispatcher's own ``recovery_seconds`` (orphan
  transaction + job and queue load), as it logs it.

- ``recovery_start_check_seconds``: the integrity check before anything writes
  (``start_check``: ``SHEPHERD_START_CHECK``, default ``auto``; the note says which
  check ran).

``--quick`` shrinks the database to 2,000 queued and 20 orphans. With
``SHEPHERD_BENCH_COLD=1`` the database's pages are dropped from the page cache
(``posix_fadvise(DONTNEED)``) just before ``Runtime.open``: a cold start.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from bench.context import BenchContext
from bench.report import Result
from bench.shepherd_bench import NOOP, open_runtime, result, runtime_log
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import new_dispatch
from shepherd.store.keys import lineage_key
from shepherd.store.models import EnqueueRequest, JobRow, JobSpec
from shepherd.store.ops import ClaimRun, ClaimRuns, InsertDispatches
from shepherd.store.sqlite import SqliteStore

SCENARIO = "shepherd-recovery"
QUEUED = 100_000
ORPHANS = 1_000
DEAD = "dead-host:4242:deadbeef"
_CHUNK = 10_000
_JOBS = (
    JobSpec(name=NOOP, target=NOOP),
    JobSpec(name="alo", target=NOOP, delivery_guarantee="at-least-once"),
    JobSpec(name="amo", target=NOOP, delivery_guarantee="at-most-once"),
)


async def build(db: str, queued: int, orphans: int) -> None:
    """Create the jobs with a runtime, then the queue and the orphans without one."""
    async with open_runtime(db, jobs=_JOBS):
        pass
    store = await SqliteStore.open(db, create=False)
    try:
        rows: dict[str, JobRow] = {}
        for j in _JOBS:
            row = await store.job(j.name)
            assert row is not None, j.name
            rows[j.name] = row
        now = time.time()

        def new(job: str) -> Any:
            return new_dispatch(rows[job], EnqueueRequest(job=job), now, where="build")

        for i in range(0, queued, _CHUNK):
            batch = [new(NOOP) for _ in range(min(_CHUNK, queued - i))]
            await store.apply_one(InsertDispatches(batch, "bench-setup", now))
        half = orphans // 2
        batch = [new("alo") for _ in range(half)] + [new("amo") for _ in range(orphans - half)]
        got = await store.apply_one(InsertDispatches(batch, "bench-setup", now))
        claims = [
            ClaimRun(
                dispatch_id=d_id, attempt=1, job_id=d.job_id, idempotency_key=lineage_key(d_id)
            )
            for (d_id, _), d in zip(got, batch, strict=True)
        ]
        run_ids = await store.apply_one(ClaimRuns(claims, DEAD, now))
        if any(r is None or r == 0 for r in run_ids):
            raise RuntimeError("could not build the orphaned runs")
    finally:
        await store.close()


def _dead_running(conn: Any) -> int:
    sql = "SELECT count(*) FROM runs WHERE instance = ? AND status = 'running'"
    return int(conn.execute(sql, (DEAD,)).fetchone()[0])


async def measure(ctx: BenchContext, queued: int, orphans: int) -> tuple[dict[str, float], str]:
    db = ctx.path(SCENARIO, f"recovery_{queued}.db")
    await build(str(db), queued, orphans)
    first: list[float] = []

    async def stamp(_ctx: Any) -> None:
        if not first:
            first.append(time.perf_counter())

    check = os.environ.get("SHEPHERD_START_CHECK", "auto")
    cfg = Config(database=str(db), concurrency=64, synchronous="NORMAL", start_check=check)
    size = os.path.getsize(db)  # noqa: ASYNC240 - one stat, before the timed part
    if os.environ.get("SHEPHERD_BENCH_COLD") == "1":
        _drop_from_page_cache(str(db))
    start = time.perf_counter()
    async with Runtime.open(cfg, targets={NOOP: stamp}) as rt:
        opened = time.perf_counter()
        stats = rt.statistics()["dispatcher"]
        checked = rt.statistics()["store"]
        left = await rt.store.read(_dead_running)
        with anyio.fail_after(ctx.stall_timeout):
            while not first:
                await anyio.sleep(0.001)
    if stats["recovered"] != orphans or left:
        raise RuntimeError(f"recovered {stats['recovered']} of {orphans}; {left} still running")
    return {
        "recovery_to_open": opened - start,
        "recovery_to_first_dispatch": first[0] - start,
        "recovery_dispatcher_seconds": float(stats["recovery_seconds"]),
        "recovery_start_check_seconds": float(checked["start_check_seconds"]),
    }, f"{checked['start_check']}, file {size / 2**20:.0f} MiB"


def _drop_from_page_cache(path: str) -> None:
    for name in (path, f"{path}-wal"):
        if os.path.exists(name):
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


async def run(ctx: BenchContext) -> list[Result]:
    queued, orphans = (2_000, 20) if ctx.quick else (QUEUED, ORPHANS)
    with runtime_log(ctx.path(SCENARIO, "runtime.log")):
        got, checked = await measure(ctx, queued, orphans)
    note = f"{queued:,} queued + {orphans:,} orphaned runs (half at-least-once)"
    note += f"; start check: {checked}"
    goal = {"recovery_to_first_dispatch": "; goal < 1 s"}
    return [
        result(SCENARIO, metric, value, "s", queued, None, note + goal.get(metric, ""))
        for metric, value in got.items()
    ]
