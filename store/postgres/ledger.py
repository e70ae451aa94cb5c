"""The idempotency ledger in PostgreSQL (mirrors ``store.sqlite.ledger``; rules:
``store.keys``): claiming and releasing a run's key and pruning expired ones, inside
the caller's transaction.

A claim is one ``INSERT … ON CONFLICT (key) DO UPDATE … WHERE`` the held claim is
released or expired. When two nodes claim one key at once, the second waits on the
first's row and then re-checks that condition against the committed row, so one of
them wins. ``claim_many`` claims a batch in key order, so two nodes' batches lock
keys in the same order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

__all__ = ["KeyClaim", "claim", "claim_many", "prune", "release_runs"]

_ON_CONFLICT = (
    " ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id,"
    " dispatch_id = excluded.dispatch_id, run_id = excluded.run_id, status = 'claimed',"
    " claimed_at = excluded.claimed_at, released_at = NULL,"
    " expires_at = excluded.expires_at"
    " WHERE idempotency.status = 'released' OR idempotency.expires_at < excluded.claimed_at"
    " RETURNING key"
)
_CLAIM = (
    "INSERT INTO idempotency (key, job_id, dispatch_id, run_id, status, claimed_at,"
    " expires_at) VALUES ($1, $2, $3, $4, 'claimed', $5, $6)" + _ON_CONFLICT
)
_CLAIM_MANY = (
    "INSERT INTO idempotency (key, job_id, dispatch_id, run_id, status, claimed_at,"
    " expires_at) SELECT k.key, k.job_id, k.dispatch_id, k.run_id, 'claimed', $5, k.expires_at"
    " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $6::float8[])"
    " AS k(key, job_id, dispatch_id, run_id, expires_at) ORDER BY k.key" + _ON_CONFLICT
)


class KeyClaim(msgspec.Struct, frozen=True):
    """One run's claim of a key (``claim_many``)."""

    key: str
    job_id: int
    dispatch_id: int
    run_id: int
    ttl: float


async def claim(
    conn: asyncpg.Connection,
    key: str,
    *,
    job_id: int,
    dispatch_id: int,
    run_id: int,
    now: float,
    ttl: float,
) -> bool:
    """Claim ``key`` for ``run_id``; False when another run holds it, unexpired."""
    got = await conn.fetchval(
        _CLAIM, key, job_id, dispatch_id, run_id, float(now), float(now) + float(ttl)
    )
    return got is not None


async def claim_many(conn: asyncpg.Connection, claims: Sequence[KeyClaim], now: float) -> set[str]:
    """Claim each key (one statement); the keys won. A key named twice is claimed for
    its first claim only (the later ones lose to it, as they would one by one)."""
    first: dict[str, KeyClaim] = {}
    for c in claims:
        first.setdefault(c.key, c)
    if not first:
        return set()
    items = list(first.values())
    rows = await conn.fetch(
        _CLAIM_MANY,
        [c.key for c in items],
        [c.job_id for c in items],
        [c.dispatch_id for c in items],
        [c.run_id for c in items],
        float(now),
        [float(now) + float(c.ttl) for c in items],
    )
    return {str(r[0]) for r in rows}


async def release_runs(conn: asyncpg.Connection, run_ids: list[int], now: float) -> None:
    if run_ids:
        await conn.execute(
            "UPDATE idempotency SET status = 'released', released_at = $1"
            " WHERE run_id = ANY($2::bigint[]) AND status = 'claimed'",
            float(now),
            run_ids,
        )


async def prune(conn: asyncpg.Connection, now: float, limit: int) -> int:
    """Delete at most ``limit`` expired keys; how many went."""
    status = await conn.execute(
        "DELETE FROM idempotency WHERE key IN"
        " (SELECT key FROM idempotency WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        float(now),
        limit,
    )
    return int(status.split()[-1])
