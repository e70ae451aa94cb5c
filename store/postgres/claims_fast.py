"""A dispatcher pass's claim and its outcomes as ONE statement each (``ClaimRuns``,
``FinishRuns``), the node's epoch fence folded in: the writer's transaction is then
BEGIN, one statement per op, COMMIT (each round trip to the server is most of an op's
cost; ``store.postgres.claims`` has the same semantics in several statements, and
serves the ops this path does not: a dispatch, run or key named twice in one op).

The statements keep the order of locks of ``store.postgres.claims`` (so two nodes, or
this path and that one, cannot deadlock): a claim locks its dispatches by id ``FOR
UPDATE SKIP LOCKED`` (their status read on the locked rows), takes run ids in claim
order, claims the idempotency keys in key order (``store.postgres.ledger``'s ``ON
CONFLICT``), then moves the dispatches whose key it won to ``running`` and inserts
their runs; an outcome locks its runs by id, writes those still running, then requeues
or ends their dispatches where the run is still current, and releases the keys of runs
that did not succeed. Each CTE reaches its rows through the primary key, never a status
filter (which could pick the partial indexes): the locking ones by one lookup per id, in
id order, the writes by joining the rows already found; so even the generic plan a
prepared statement keeps from a node's first passes, when the tables were small, scans
no table whole. The locking CTEs are ``MATERIALIZED``, so they run once, before the
writes that read them.

The fence: with ``epoch`` > 0 the statement's first step reads the node's row ``FOR KEY
SHARE``; when the node is no longer alive at that epoch nothing is written and every
claim is lost (None) / every outcome refused (None), logged as ``cluster.fence_*`` log it.
"""

from __future__ import annotations

import logging

import asyncpg

from shepherd.store.ops import ClaimRuns, FinishRun, FinishRuns, Settle, SettleQueued
from shepherd.store.ops.chains import Finished
from shepherd.store.postgres import alerts, chains
from shepherd.store.postgres.runs import settle_queued

__all__ = ["claim_in_one", "finish_in_one", "one_claim_fits", "one_finish_fits"]

log = logging.getLogger("shepherd.cluster")

_FENCE = (
    "fence AS (SELECT $E::bigint = 0 OR EXISTS (SELECT 1 FROM nodes WHERE name = $N"
    " AND status = 'alive' AND epoch = $E::bigint FOR KEY SHARE) AS ok)"
)

# the ids asked for, distinct and in id order: each row is then locked by a lookup on the
# primary key, in that order (a parameterized lookup, so the cached generic plan cannot
# become a scan of the whole table however small the table was when it was planned)
_IDS = "(SELECT DISTINCT u.id FROM unnest({}::bigint[]) AS u(id) ORDER BY u.id) u"

_CLAIM = (
    "WITH "
    + _FENCE.replace("$E", "$8").replace("$N", "$7")
    + ", c AS (SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bigint[], $4::text[],"
    " $5::float8[]) WITH ORDINALITY AS c(dispatch_id, attempt, job_id, key, expires_at, ord)),"
    " locked AS MATERIALIZED (SELECT d.id, d.status FROM " + _IDS.format("$1") + ","
    " LATERAL (SELECT d.id, d.status FROM dispatches d"
    " WHERE (SELECT ok FROM fence) AND d.id = u.id FOR UPDATE SKIP LOCKED) d),"
    " ids AS MATERIALIZED (SELECT q.*,"
    " nextval((SELECT pg_get_serial_sequence('runs', 'id'))::regclass) AS run_id"
    " FROM (SELECT c.dispatch_id, c.job_id, c.key, c.expires_at FROM c"
    " JOIN locked l ON l.id = c.dispatch_id WHERE l.status = 'queued' ORDER BY c.ord) q),"
    " keys AS (INSERT INTO idempotency (key, job_id, dispatch_id, run_id, status, claimed_at,"
    " expires_at) SELECT key, job_id, dispatch_id, run_id, 'claimed', $6, expires_at FROM ids"
    " ORDER BY key ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id,"
    " dispatch_id = excluded.dispatch_id, run_id = excluded.run_id, status = 'claimed',"
    " claimed_at = excluded.claimed_at, released_at = NULL, expires_at = excluded.expires_at"
    " WHERE idempotency.status = 'released' OR idempotency.expires_at < excluded.claimed_at"
    " RETURNING key, dispatch_id, run_id),"
    " won AS (UPDATE dispatches d SET status = 'running', attempt = c.attempt,"
    " current_run_id = k.run_id, updated_at = $6 FROM keys k JOIN c ON c.dispatch_id ="
    " k.dispatch_id WHERE d.id = ANY($1::bigint[]) AND d.id = k.dispatch_id"
    " RETURNING d.id, d.job_id, d.job_name, k.run_id, c.attempt, k.key),"
    " ins AS (INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
    " heartbeat_at, idempotency_key, instance)"
    " SELECT run_id, id, job_id, job_name, attempt, 'running', $6, $6, key, $7 FROM won)"
    " SELECT 'f', NULL::bigint, NULL::bigint, ok FROM fence"
    " UNION ALL SELECT 'l', dispatch_id, NULL, NULL FROM ids"
    " UNION ALL SELECT 'w', id, run_id, NULL FROM won"
)

_FINISH = (
    "WITH "
    + _FENCE.replace("$E", "$19").replace("$N", "$18")
    + ", f AS (SELECT * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bytea[],"
    " $6::text[], $7::integer[], $8::integer[], $9::integer[], $10::text[], $11::text[],"
    " $12::bytea[], $13::bigint[], $14::text[], $15::text[], $16::float8[], $17::integer[])"
    " AS f(id, outcome, error, result, reason, exit_code, signal, timed_out, stdout, stderr,"
    " details, dispatch_id, next, dead_reason, not_before, refund)),"
    " released AS (UPDATE idempotency SET status = 'released', released_at = $1"
    " WHERE (SELECT ok FROM fence) AND run_id = ANY($20::bigint[]) AND status = 'claimed'),"
    " locked AS MATERIALIZED (SELECT r.id, r.status FROM " + _IDS.format("$2") + ","
    " LATERAL (SELECT r.id, r.status FROM runs r"
    " WHERE (SELECT ok FROM fence) AND r.id = u.id FOR UPDATE) r),"
    " live AS (SELECT f.* FROM f JOIN locked l ON l.id = f.id WHERE l.status = 'running'),"
    " accepted AS (UPDATE runs r SET status = x.outcome, finished_at = $1, error = x.error,"
    " result = x.result, reason = x.reason, exit_code = x.exit_code, signal = x.signal,"
    " timed_out = x.timed_out, stdout = x.stdout, stderr = x.stderr, details = x.details"
    " FROM live x WHERE r.id = x.id"
    " RETURNING x.id, x.dispatch_id, x.next, x.outcome, x.error, x.result, x.dead_reason,"
    " x.not_before, x.refund),"
    " requeued AS (UPDATE dispatches d SET status = 'queued', seq = nextval('dispatch_seq'),"
    " origin = $18, not_before = a.not_before, outcome = a.outcome, last_error = a.error,"
    " current_run_id = NULL, updated_at = $1, attempt = d.attempt - a.refund,"
    " agent = NULL, assigned_at = NULL"
    " FROM accepted a WHERE a.next IN ('retry', 'requeue')"
    " AND d.id = a.dispatch_id AND d.current_run_id = a.id RETURNING a.id, d.seq),"
    " ended AS (UPDATE dispatches d SET status = a.next, outcome = a.outcome,"
    " dead_reason = a.dead_reason, last_error = a.error, result = a.result, updated_at = $1"
    " FROM accepted a WHERE a.next IN ('done', 'dead', 'cancelled')"
    " AND d.id = a.dispatch_id AND d.current_run_id = a.id"
    " RETURNING a.id)"
    " SELECT 'f', NULL::bigint, NULL::bigint, ok FROM fence"
    " UNION ALL SELECT 'c', NULL, NULL, EXISTS (SELECT 1 FROM jobs WHERE parent IS NOT NULL)"
    " UNION ALL SELECT 'a', id, NULL, NULL FROM accepted"
    " UNION ALL SELECT 'r', id, seq, NULL FROM requeued"
    " UNION ALL SELECT 'e', id, NULL, NULL FROM ended"
)


def one_claim_fits(op: ClaimRuns) -> bool:
    """Whether ``claim_in_one`` serves ``op``: every claim has a key, and no dispatch or
    key is named twice (``store.postgres.claims`` decides those one by one)."""
    ids = {c.dispatch_id for c in op.claims}
    keys = {c.idempotency_key for c in op.claims}
    return None not in keys and len(ids) == len(keys) == len(op.claims)


def one_finish_fits(op: FinishRuns) -> bool:
    """Whether ``finish_in_one`` serves ``op``: no run named twice."""
    return len({f.run_id for f in op.finals}) == len(op.finals)


async def claim_in_one(conn: asyncpg.Connection, op: ClaimRuns) -> list[int | None]:
    """``claims.claim_runs`` in one statement (``one_claim_fits(op)`` must hold): per
    claim its run id, None where it is not queued or another node holds it, 0 where its
    key is held by another run (the dispatch is then settled ``skipped``)."""
    if not op.claims:
        return []
    now = float(op.now)
    rows = await conn.fetch(
        _CLAIM,
        [c.dispatch_id for c in op.claims],
        [c.attempt for c in op.claims],
        [c.job_id for c in op.claims],
        [c.idempotency_key for c in op.claims],
        [now + float(c.key_ttl) for c in op.claims],
        now,
        op.instance,
        int(op.epoch),
    )
    if not any(r[0] == "f" and r[3] for r in rows):
        log.warning(
            "stale claim refused: node %s epoch %d, dispatches %s",
            op.instance,
            op.epoch,
            [c.dispatch_id for c in op.claims],
        )
        return [None] * len(op.claims)
    got = {int(r[1]): int(r[2]) for r in rows if r[0] == "w"}
    blocked = [int(r[1]) for r in rows if r[0] == "l" and int(r[1]) not in got]
    if blocked:  # their skipped runs take ids past the claims'
        skip = [
            Settle(dispatch_id=d, status="done", outcome="skipped", reason="idempotency-skip")
            for d in sorted(blocked)
        ]
        await settle_queued(conn, SettleQueued(skip, op.now))
    lost = set(blocked)
    return [0 if c.dispatch_id in lost else got.get(c.dispatch_id) for c in op.claims]


async def finish_in_one(conn: asyncpg.Connection, op: FinishRuns) -> Finished:
    """``claims.finish_runs`` in one statement (``one_finish_fits(op)`` must hold), then
    the dead letters' alerts and the chain children, only when there are any."""
    finals = op.finals
    if not finals:
        return Finished([])
    now = float(op.now)
    rows = await conn.fetch(
        _FINISH,
        now,
        [f.run_id for f in finals],
        [f.outcome for f in finals],
        [f.error for f in finals],
        [f.result for f in finals],
        [f.reason for f in finals],
        [f.exit_code for f in finals],
        [f.signal for f in finals],
        [int(f.timed_out) for f in finals],
        [f.stdout for f in finals],
        [f.stderr for f in finals],
        [f.details for f in finals],
        [f.dispatch_id for f in finals],
        [f.next for f in finals],
        [f.dead_reason for f in finals],
        [float(f.not_before or now) for f in finals],
        [int(f.refund) for f in finals],
        op.origin,
        int(op.epoch),
        [f.run_id for f in finals if f.outcome != "ok"],
    )
    flags = {r[0]: bool(r[3]) for r in rows if r[0] in ("f", "c")}
    if not flags["f"]:
        log.warning(
            "stale outcome refused: node %s epoch %d, runs %s",
            op.origin,
            op.epoch,
            [f.run_id for f in finals],
        )
        return Finished([None] * len(finals))
    accepted = {int(r[1]) for r in rows if r[0] == "a"}
    requeued = {int(r[1]): int(r[2]) for r in rows if r[0] == "r"}
    ended_ids = {int(r[1]) for r in rows if r[0] == "e"}
    ended: list[FinishRun] = []
    out: list[int | None] = []
    for f in finals:
        if f.run_id not in accepted:
            out.append(None)
        elif f.next in ("retry", "requeue"):
            out.append(requeued.get(f.run_id))
        else:
            out.append(0 if f.run_id in ended_ids else None)
            if f.run_id in ended_ids and f.next == "dead":
                await alerts.queue_alert(conn, f.dispatch_id, op.now, op.alert)
            if f.run_id in ended_ids and f.next != "cancelled":
                ended.append(f)
    children = await chains.fire_children(conn, ended, op.origin, op.now) if flags["c"] else []
    return Finished(out, children)
