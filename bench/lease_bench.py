"""``leases``: external workers' claim → complete round trips per second over HTTP,
beside the in-process ``python`` executor draining the same backlog, in the same run.

Per run, ``N`` dispatches (1,000; 200 with ``--quick``) are committed before anything
serves the file, then drained:

- ``python_drain.c1`` / ``.c4``: an embedded runtime with concurrency 1 / 4 runs them
  as no-op ``python`` jobs (the in-process round trip: claim, run, finalize);
- ``external_drain.w1`` / ``.w4``: the real daemon (``python -m shepherd run`` with
  ``[http] listen``, concurrency 64) in a subprocess offers them as ``external`` runs;
  1 / 4 worker tasks in this process loop ``POST /api/v1/workers/claim`` →
  ``POST .../complete`` over loopback HTTP (one keep-alive connection each). The rate
  is N over the first claim → the N-th dispatch committed ``done``. Ratio to
  ``python_drain.c1`` / ``.c4``: what leaving the process costs;
- ``empty_claim.w1``: after the drain, 300 claims that find nothing (204), one after
  another: the daemon's HTTP request floor (a lease round trip is two requests).

Every figure is checked: the store holds N done dispatches, none dead.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.context import BenchContext
from bench.report import Result, stop_process
from bench.shepherd_bench import NOOP, noop, open_runtime, result
from bench.shepherd_e2e import child_env
from shepherd.runtime.app import Runtime
from shepherd.runtime.jobs import new_dispatch
from shepherd.store.models import EnqueueRequest, JobSpec
from shepherd.store.ops import InsertDispatches
from shepherd.store.sqlite import SqliteStore

SCENARIO = "leases"
EXT = "ext"
TOKEN = "bench-admin-token"


async def _prepare(db: Path, job: JobSpec, n: int) -> None:
    async with open_runtime(db, jobs=(job,)):
        pass
    store = await SqliteStore.open(db, create=False)
    try:
        row = await store.job(job.name)
        assert row is not None
        now = time.time()
        new = new_dispatch(row, EnqueueRequest(job=job.name), now, where="bench")
        await store.apply_one(InsertDispatches([new] * n, "bench-setup", now))
    finally:
        await store.close()


def _done(db: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = dict(conn.execute("SELECT status, count(*) FROM dispatches GROUP BY status"))
    return int(rows.get("done", 0)), int(rows.get("dead", 0))


async def _wait_done(db: Path, n: int, stall: float) -> float:
    with anyio.fail_after(stall):
        while True:
            done, dead = _done(db)
            if dead:
                raise RuntimeError(f"{dead} dispatches dead")
            if done >= n:
                return time.monotonic()
            await anyio.sleep(0.005)


async def python_drain(ctx: BenchContext, n: int, concurrency: int) -> float:
    db = ctx.path(SCENARIO, f"python_c{concurrency}.db")
    await _prepare(db, JobSpec(name=NOOP, target=NOOP), n)
    start = time.monotonic()
    async with open_runtime(db, concurrency=concurrency, targets={NOOP: noop}) as rt:
        await _until(rt, n, ctx.stall_timeout)
        end = time.monotonic()
    return n / (end - start)


async def _until(rt: Runtime, n: int, stall: float) -> None:
    with anyio.fail_after(stall):
        while (await rt.stats())["dispatches"]["done"] < n:
            await anyio.sleep(0.002)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _worker(url: str, counter: dict[str, Any], n: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Agent-ID": "bench"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        while counter["claimed"] < n:
            got = await c.post("/api/v1/workers/claim", json={"wait": 1})
            if got.status_code == 204:
                continue
            got.raise_for_status()
            lease = got.json()["lease"]
            counter["claimed"] += 1
            counter.setdefault("first", time.monotonic())
            done = await c.post(
                f"/api/v1/workers/leases/{lease['run_id']}/complete",
                json={"token": lease["token"], "result": None},
            )
            done.raise_for_status()


async def external_drain(ctx: BenchContext, n: int, workers: int) -> tuple[float, float]:
    db = ctx.path(SCENARIO, f"external_w{workers}.db")
    await _prepare(db, JobSpec(name=EXT, executor="external"), n)
    port = _free_port()
    config = db.with_suffix(".toml")
    config.write_text(
        f'database = "{db.name}"\nconcurrency = 64\nsynchronous = "NORMAL"\n'
        f'shutdown_grace = "1s"\n[http]\nlisten = "127.0.0.1:{port}"\nrate_limit = 0\n'
    )
    env = dict(child_env(), SHEPHERD_ADMIN_TOKEN=TOKEN)
    log = (db.parent / f"daemon_w{workers}.log").open("wb")
    cmd = [sys.executable, "-m", "shepherd", "--config", str(config), "run"]
    # started once, before the timed part
    proc = subprocess.Popen(cmd, cwd=db.parent, env=env, stdout=log, stderr=log)  # noqa: ASYNC220
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_up(url, proc, ctx.stall_timeout)
        counter: dict[str, Any] = {"claimed": 0}
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(_worker, url, counter, n)
        end = await _wait_done(db, n, ctx.stall_timeout)
        rate = n / (end - counter["first"])
        floor = await _empty_claims(url, 300)
    finally:
        stop_process(proc, 20)
        log.close()
    return rate, floor


async def _empty_claims(url: str, count: int) -> float:
    """Claims answered 204 (nothing to claim), one after another: the HTTP floor."""
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Agent-ID": "bench"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        await c.post("/api/v1/workers/claim", json={"wait": 0})
        start = time.monotonic()
        for _ in range(count):
            got = await c.post("/api/v1/workers/claim", json={"wait": 0})
            assert got.status_code == 204, got.text
        return count / (time.monotonic() - start)


async def _wait_up(url: str, proc: subprocess.Popen[bytes], stall: float) -> None:
    with anyio.fail_after(stall):
        async with httpx.AsyncClient(base_url=url) as c:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {proc.returncode}")
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.02)


async def run(ctx: BenchContext) -> list[Result]:
    n = 200 if ctx.quick else 1000
    out: list[Result] = []
    for c in (1, 4):
        rate = await python_drain(ctx, n, c)
        out.append(result(SCENARIO, f"python_drain.c{c}", rate, "runs/s", n=n))
    for w in (1, 4):
        rate, floor = await external_drain(ctx, n, w)
        note = f"{w} worker task(s), daemon subprocess, loopback HTTP"
        ref = f"{SCENARIO}:python_drain.c{w}"
        out.append(result(SCENARIO, f"external_drain.w{w}", rate, "leases/s", n, ref, note))
        if w == 1:
            note = "claims answered 204, one at a time: the HTTP request floor"
            out.append(result(SCENARIO, "empty_claim.w1", floor, "requests/s", 300, None, note))
    return out
