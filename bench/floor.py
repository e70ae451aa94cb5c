"""The floor: raw SQLite commit rate through aiosqlite on a real file in WAL mode.

Nothing built on aiosqlite can commit faster than this, so shepherd's and huey's
figures are reported as ratios to it. Variants, each on a fresh database file and
once per size ``n``:

- ``commit_1row.<sync>``: one INSERT per transaction, autocommit connection, so one
  ``execute`` = one thread hop = one commit. The best single-row commit rate.
- ``commit_1row_execute_commit.normal``: the same with the usual
  ``await execute(); await commit()`` (two thread hops per row): what the hop costs.
- ``commit_1000rows.<sync>``: ``BEGIN``; ``executemany`` of 1,000 rows; ``COMMIT``.

``<sync>`` is ``PRAGMA synchronous`` = NORMAL (shepherd's setting) or FULL (SQLite's
default, and what huey runs with unless told otherwise). The table is a small job row
without secondary indexes: id, a ~50-byte payload, status, two timestamps.

``python_idle_rss`` is the RSS of a bare interpreter that imported asyncio and
sqlite3: the memory floor for worker RSS figures.
"""

from __future__ import annotations

import subprocess
import sys
import time

import aiosqlite

from bench.context import BenchContext
from bench.report import Result, rss_mib

SCENARIO = "floor"
BATCH = 1_000

_DDL = (
    "CREATE TABLE job (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, "
    "status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL)"
)
_INSERT = "INSERT INTO job (payload, status, created_at, updated_at) VALUES (?, ?, ?, ?)"


def _rows(n: int) -> list[tuple[str, str, float, float]]:
    now = time.time()
    return [
        (f'{{"agent":"agent-{i % 97:03d}","turn":{i:09d},"x":"abcdef"}}', "queued", now, now)
        for i in range(n)
    ]


async def _connect(
    ctx: BenchContext, name: str, sync: str, *, autocommit: bool = True
) -> aiosqlite.Connection:
    # autocommit=False keeps sqlite3's implicit BEGIN before DML, so a row costs
    # execute + commit: the pattern most aiosqlite code uses.
    db = await aiosqlite.connect(
        ctx.path(SCENARIO, f"{name}.db"), isolation_level=None if autocommit else ""
    )
    mode = await (await db.execute("PRAGMA journal_mode=WAL")).fetchone()
    if mode is None or mode[0].lower() != "wal":
        raise RuntimeError(f"journal_mode is {mode!r}, not wal")
    await db.execute(f"PRAGMA synchronous={sync}")
    await db.execute(_DDL)
    return db


async def commit_1row(ctx: BenchContext, n: int, sync: str, *, explicit_commit: bool) -> float:
    """Rows/s for ``n`` single-row transactions."""
    rows = _rows(n)
    name = f"1row_{sync}_{'commit' if explicit_commit else 'auto'}_{n}"
    db = await _connect(ctx, name, sync, autocommit=not explicit_commit)
    try:
        start = time.perf_counter()
        if explicit_commit:
            for row in rows:
                await db.execute(_INSERT, row)
                await db.commit()
        else:
            for row in rows:
                await db.execute(_INSERT, row)
        elapsed = time.perf_counter() - start
        await _check_count(db, n)
    finally:
        await db.close()
    return n / elapsed


async def commit_batches(ctx: BenchContext, n: int, sync: str) -> float:
    """Rows/s for ``n`` rows in transactions of `BATCH` rows via executemany."""
    rows = _rows(n)
    db = await _connect(ctx, f"batch_{sync}_{n}", sync)
    try:
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            await db.execute("BEGIN")
            await db.executemany(_INSERT, rows[i : i + BATCH])
            await db.execute("COMMIT")
        elapsed = time.perf_counter() - start
        await _check_count(db, n)
    finally:
        await db.close()
    return n / elapsed


async def _check_count(db: aiosqlite.Connection, n: int) -> None:
    row = await (await db.execute("SELECT count(*) FROM job")).fetchone()
    if row is None or row[0] != n:
        raise RuntimeError(f"expected {n} rows, found {row!r}")


def python_idle_rss() -> float:
    """RSS (MiB) of a fresh interpreter that imported asyncio and sqlite3, measured from outside."""
    code = "import asyncio, sqlite3, sys; print('ready', flush=True); sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("idle interpreter did not start")
        rss = rss_mib(proc.pid)
        proc.stdin.close()
        proc.wait(timeout=10)
    return rss


async def run(ctx: BenchContext) -> list[Result]:
    out = [
        Result(
            scenario=SCENARIO,
            metric="python_idle_rss",
            value=python_idle_rss(),
            unit="MiB",
            note="python -c 'import asyncio, sqlite3'",
        )
    ]
    for n in ctx.sizes:
        for sync in ("NORMAL", "FULL"):
            s = sync.lower()
            ref = None if s == "normal" else f"{SCENARIO}:commit_1row.normal"
            rate = await commit_1row(ctx, n, sync, explicit_commit=False)
            out.append(
                Result(
                    scenario=SCENARIO,
                    metric=f"commit_1row.{s}",
                    value=rate,
                    unit="rows/s",
                    n=n,
                    ratio_to=ref,
                    note="1 row = 1 tx = 1 thread hop",
                )
            )
            if s == "normal":
                rate = await commit_1row(ctx, n, sync, explicit_commit=True)
                out.append(
                    Result(
                        scenario=SCENARIO,
                        metric="commit_1row_execute_commit.normal",
                        value=rate,
                        unit="rows/s",
                        n=n,
                        ratio_to=f"{SCENARIO}:commit_1row.normal",
                        note="execute + commit: 2 thread hops per row",
                    )
                )
            rate = await commit_batches(ctx, n, sync)
            out.append(
                Result(
                    scenario=SCENARIO,
                    metric=f"commit_{BATCH}rows.{s}",
                    value=rate,
                    unit="rows/s",
                    n=n,
                    ratio_to=f"{SCENARIO}:commit_1row.{s}",
                    note=f"executemany, {BATCH:,} rows per tx",
                )
            )
    return out
