"""A dashboard-sized database filled with plain SQL, fast: ``runs`` finished runs over
30 days (the newest hour busy), one ended dispatch per run, ``queued`` queued
dispatches, skipped slots, a few dead letters and agents. The schema comes from
opening the store once; everything else is ``executemany`` in one transaction.

Used by ``bench/ui_bench.py`` and the dashboard's query-plan test.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import anyio
import msgspec

from shepherd.store.models import JobSpec, encode_json
from shepherd.store.sqlite import SqliteStore

__all__ = ["JOBS", "fill"]

JOBS = 20
_CHUNK = 50_000
_STATUSES = ["ok"] * 90 + ["error"] * 6 + ["timeout"] * 2 + ["crashed"] + ["skipped"]


def _schema(db: Path) -> None:
    async def main() -> None:
        store = await SqliteStore.open(str(db))
        await store.close()

    anyio.run(main)


def fill(db: Path, *, runs: int, queued: int, seed: int = 7) -> None:
    """Fill ``db`` (created if missing) with ``JOBS`` jobs, ``runs`` runs and their
    dispatches, and ``queued`` queued dispatches."""
    _schema(db)
    rnd = random.Random(seed)
    now = time.time()
    span = 30 * 86400.0
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN IMMEDIATE")
        for j in range(1, JOBS + 1):
            spec = JobSpec(name=f"job{j:02d}", target="noop", cron=f"{j % 60} * * * *")
            conn.execute(
                "INSERT INTO jobs (id, name, executor, enabled, spec, next_run_at, last_run_at,"
                " last_status, created_at, updated_at) VALUES (?, ?, 'python', 1, ?, ?, ?, 'ok',"
                " ?, ?)",
                (j, spec.name, encode_json(spec), now + 60 * j, now, now - span, now),
            )
        # the newest 2% of the runs finish in the last hour, the rest over 30 days
        recent = max(1, runs // 50)
        for lo in range(0, runs, _CHUNK):
            run_rows = []
            dispatch_rows = []
            for i in range(lo, min(runs, lo + _CHUNK)):
                rid = i + 1
                if i >= runs - recent:
                    started = now - 3600 + 3600 * (i - (runs - recent)) / recent
                else:
                    started = now - span + (span - 3600) * i / runs
                status = rnd.choice(_STATUSES)
                job = rid % JOBS + 1
                skipped = status == "skipped"
                details = msgspec.json.encode({"slot": started}) if skipped else None
                run_rows.append(
                    (
                        rid,
                        None if skipped else rid,
                        job,
                        f"job{job:02d}",
                        0 if skipped else 1,
                        status,
                        started,
                        started + 1.5,
                        "missed" if skipped else None,
                        None if status in ("ok", "skipped") else f"failed at step {i % 7}",
                        f"output of run {rid}",
                        details,
                        f"agent{rid % 5}" if rid % 3 == 0 else None,
                    )
                )
                if not skipped:
                    dead = status != "ok" and rid % 10 == 0
                    dispatch_rows.append(
                        (
                            rid,
                            rid,
                            job,
                            f"job{job:02d}",
                            "schedule" if rid % 2 else "enqueue",
                            "dead" if dead else "done",
                            rid % 5,
                            started,
                            1,
                            1,
                            started,
                            started + 1.5,
                            status,
                            "attempts" if dead else None,
                            None if status == "ok" else "boom",
                            rid,
                        )
                    )
            conn.executemany(
                "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status,"
                " started_at, finished_at, reason, error, stdout, details, agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                run_rows,
            )
            conn.executemany(
                "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
                " not_before, attempt, max_attempts, created_at, updated_at, outcome,"
                " dead_reason, last_error, current_run_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                dispatch_rows,
            )
        base = runs + 1
        for lo in range(0, queued, _CHUNK):
            conn.executemany(
                "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
                " not_before, max_attempts, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'enqueue', 'queued', ?, ?, 3, ?, ?)",
                [
                    (
                        base + i,
                        base + i,
                        i % JOBS + 1,
                        f"job{i % JOBS + 1:02d}",
                        i % 5,
                        now + 86400,
                        now - 60,
                        now - 60,
                    )
                    for i in range(lo, min(queued, lo + _CHUNK))
                ],
            )
        conn.execute("COMMIT")
