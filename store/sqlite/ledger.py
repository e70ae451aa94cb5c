"""The idempotency ledger in SQLite: the ``idempotency`` table, claiming and releasing a
run's key and pruning expired ones (rules: ``store.keys``). Functions run on the
writer's thread inside the caller's transaction."""

from __future__ import annotations

import sqlite3

__all__ = ["DDL", "claim", "prune", "release_runs"]

DDL = [
    """CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        job_id INTEGER NOT NULL,
        dispatch_id INTEGER,
        run_id INTEGER,
        status TEXT NOT NULL,
        claimed_at REAL NOT NULL,
        released_at REAL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX idempotency_run ON idempotency(run_id)",
    "CREATE INDEX idempotency_expiry ON idempotency(expires_at)",
]


def claim(
    conn: sqlite3.Connection,
    key: str,
    *,
    job_id: int,
    dispatch_id: int,
    run_id: int,
    now: float,
    ttl: float,
) -> bool:
    cur = conn.execute(
        "INSERT INTO idempotency (key, job_id, dispatch_id, run_id, status, claimed_at,"
        " expires_at) VALUES (?, ?, ?, ?, 'claimed', ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET job_id = excluded.job_id,"
        " dispatch_id = excluded.dispatch_id, run_id = excluded.run_id, status = 'claimed',"
        " claimed_at = excluded.claimed_at, released_at = NULL,"
        " expires_at = excluded.expires_at"
        " WHERE idempotency.status = 'released' OR idempotency.expires_at < excluded.claimed_at",
        (key, job_id, dispatch_id, run_id, now, now + ttl),
    )
    return cur.rowcount == 1


def release_runs(conn: sqlite3.Connection, run_ids: list[int], now: float) -> None:
    if run_ids:
        conn.executemany(
            "UPDATE idempotency SET status = 'released', released_at = ?"
            " WHERE run_id = ? AND status = 'claimed'",
            [(now, r) for r in run_ids],
        )


def prune(conn: sqlite3.Connection, now: float, limit: int) -> int:
    """Delete at most ``limit`` expired keys; how many went."""
    return conn.execute(
        "DELETE FROM idempotency WHERE rowid IN"
        " (SELECT rowid FROM idempotency WHERE expires_at < ? LIMIT ?)",
        (now, limit),
    ).rowcount
