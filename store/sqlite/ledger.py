"""The idempotency ledger in SQLite: the ``idempotency`` table, claiming and releasing a
run's key and pruning expired ones (rules: ``store.keys``). Functions run on the
writer's thread inside the caller's transaction."""

from __future__ import annotations

import sqlite3

__all__ = ["DDL", "KeyClaim", "claim_many", "prune", "release_runs"]

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


# a key is won when it is new, released or expired; a claimed, live key is left alone
_CLAIM = (
    "INSERT INTO idempotency (key, job_id, dispatch_id, run_id, status, claimed_at,"
    " expires_at) VALUES (?, ?, ?, ?, 'claimed', ?, ?)"
    " ON CONFLICT(key) DO UPDATE SET job_id = excluded.job_id,"
    " dispatch_id = excluded.dispatch_id, run_id = excluded.run_id, status = 'claimed',"
    " claimed_at = excluded.claimed_at, released_at = NULL,"
    " expires_at = excluded.expires_at"
    " WHERE idempotency.status = 'released' OR idempotency.expires_at < excluded.claimed_at"
)

# (key, job id, dispatch id, run id, claimed at, expires at)
KeyClaim = tuple[str, int, int, int, float, float]


def claim_many(conn: sqlite3.Connection, claims: list[KeyClaim]) -> set[int]:
    """Claim each key for its run, in order (of two claims of one key the first wins,
    as one by one): the run ids whose key was won. One statement for all of them; only
    when some key was not won, a read of who holds the keys now (run ids are new, so a
    key held by its claim's run was won by this claim)."""
    if not claims:
        return set()
    if conn.executemany(_CLAIM, claims).rowcount == len(claims):
        return {c[3] for c in claims}
    holder: dict[str, int] = {}
    keys = [c[0] for c in claims]
    for k in range(0, len(keys), 500):
        part = keys[k : k + 500]
        marks = ",".join("?" * len(part))
        sql = f"SELECT key, run_id FROM idempotency WHERE key IN ({marks})"
        holder.update(conn.execute(sql, part).fetchall())
    return {c[3] for c in claims if holder.get(c[0]) == c[3]}


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
