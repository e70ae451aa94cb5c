"""The idempotency ledger: a key is claimed by at most one run at a time, in the database.

Rules (OCS ``idempotency_ledger``): claiming an absent key inserts it ``claimed``; a
``released`` or expired key is re-claimed (a retry of the same lineage); a key that is
``claimed`` by another run cannot be claimed — that dispatch does not run and is
recorded ``skipped`` (``idempotency-skip``). A run that ends ``ok`` keeps its key
claimed until it expires (7 days; 24 h for ``delete_after_run`` jobs); any other end
releases it so the next attempt can claim it again. The pruner deletes expired keys.
Functions run on the writer's thread inside the caller's transaction.

The key a producer gives on enqueue is two things: the run key (``dispatches.
idempotency_key``, claimed here, ``<key>:replay<n>`` after a crash replay) and the
dispatch's producer key (``dispatches.producer_key``: set once, never rewritten, unique
per job by an index), which binds the key to that dispatch for as long as its row
exists, whatever its state; enqueueing the key again returns that dispatch.
"""

from __future__ import annotations

import hashlib
import sqlite3

__all__ = [
    "DDL",
    "MAX_KEY",
    "claim",
    "key_problem",
    "lineage_key",
    "prune",
    "release_runs",
    "replay_key",
]

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

DEFAULT_TTL = 7 * 86400.0
SHORT_TTL = 86400.0


MAX_KEY = 255  # characters in a producer's key
REPLAY = ":replay"  # ``<key>:replay<n>``: the run key of a crash replay (``replay_key``)


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a producer's idempotency key (None: it can). The system's
    own run keys end in ``:replay<n>``, so a producer's key may not hold ``:replay``: it
    would collide with the replay of another key (and be cut there on a replay)."""
    if not isinstance(key, str):
        return f"must be a string, not {type(key).__name__}"
    if not key.strip():
        return "must not be empty or only whitespace"
    if len(key) > MAX_KEY:
        return f"must be at most {MAX_KEY} characters (got {len(key)})"
    if REPLAY in key:
        return f"must not contain {REPLAY!r} (reserved for the keys of crash replays)"
    return None


def lineage_key(dispatch_id: int) -> str:
    """The key shared by every attempt of one dispatch (its retry lineage)."""
    return hashlib.sha256(f"dispatch:{dispatch_id}".encode()).hexdigest()[:32]


def replay_key(key: str | None, dispatch_id: int, attempt: int) -> str:
    """A fresh key in the same lineage, for the replay of a run orphaned by a crash."""
    base = key or lineage_key(dispatch_id)
    return f"{base.split(REPLAY, 1)[0]}{REPLAY}{attempt}"


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
