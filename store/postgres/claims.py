"""PostgreSQL SQL of the claim and outcome ops (``ClaimRuns``, ``FinishRuns``; mirrors
``store.sqlite.claims``), with their fencing: conditional UPDATEs on ``status`` and
``current_run_id``, which PostgreSQL re-checks after waiting on a row's lock.

Several nodes claim from one queue at once. A claim first locks the dispatches it
asks for that are still queued, ``FOR UPDATE SKIP LOCKED``: a dispatch another node is
claiming (or has claimed) is not waited for, it is simply not won (None, as SQLite
answers a lost claim). Only the locked ones get run ids (from the ``runs`` identity,
taken before the insert) and have their idempotency keys claimed, in key order, so
two nodes never deadlock on keys.
"""

from __future__ import annotations

import asyncpg

from shepherd.store.ops import ClaimRuns, FinishRun, FinishRuns, Settle, SettleQueued
from shepherd.store.ops.chains import Finished
from shepherd.store.postgres import alerts, chains, claims_fast, cluster, ledger
from shepherd.store.postgres.dispatches import take_run_ids
from shepherd.store.postgres.runs import settle_queued

__all__ = ["claim_runs", "finish_runs"]

# the rows asked for, one primary-key lookup per id in id order (a status filter here
# could lead the planner to the queued-only indexes, a scan of the whole backlog, and
# ``id = ANY`` to a scan of the table when its cached plan was made while it was small);
# their status is checked on the locked rows, which no other transaction can change
# until this one ends
_LOCK = (
    "SELECT d.id, d.status FROM (SELECT DISTINCT u.id FROM unnest($1::bigint[]) AS u(id)"
    " ORDER BY u.id) u, LATERAL (SELECT id, status FROM dispatches WHERE id = u.id"
    " FOR UPDATE SKIP LOCKED) d"
)
# queued → running and the run row, in one statement, for the locked queued dispatches
# (their lock, not a status filter, keeps them queued until this update)
_CLAIM = (
    "WITH c AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::text[])"
    " AS c(dispatch_id, run_id, attempt, key)),"
    " won AS (UPDATE dispatches d SET status = 'running', attempt = c.attempt,"
    " current_run_id = c.run_id, updated_at = $5 FROM c"
    " WHERE d.id = ANY($1::bigint[]) AND d.id = c.dispatch_id"
    " RETURNING d.id, d.job_id, d.job_name, c.run_id, c.attempt, c.key)"
    " INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
    " heartbeat_at, idempotency_key, instance)"
    " SELECT run_id, id, job_id, job_name, attempt, 'running', $5, $5, key, $6 FROM won"
    " RETURNING id"
)


async def claim_runs(conn: asyncpg.Connection, op: ClaimRuns) -> list[int | None]:
    """Per claim: its run id; None where the dispatch is not queued or another node
    holds it (or the node's epoch is stale); 0 where its key is held by another run (it
    is settled ``skipped``). One statement when it fits (``claims_fast``)."""
    if claims_fast.one_claim_fits(op):
        return await claims_fast.claim_in_one(conn, op)
    claimed: list[int | None] = await _fenced_claims(conn, op)
    return claimed


async def _claim_runs(conn: asyncpg.Connection, op: ClaimRuns) -> list[int | None]:
    if not op.claims:
        return []
    rows = await conn.fetch(_LOCK, [c.dispatch_id for c in op.claims])
    locked = {int(r[0]) for r in rows if r[1] == "queued"}
    mine = [k for k, c in enumerate(op.claims) if c.dispatch_id in locked]
    first: dict[int, int] = {}  # dispatch id → the index of its first claim in this op
    for k in mine:
        first.setdefault(op.claims[k].dispatch_id, k)
    order = sorted(first.values())
    ids = dict(zip(order, await take_run_ids(conn, len(order)), strict=True))
    blocked = await _claim_keys(conn, op, ids)
    claimed = [k for k in order if op.claims[k].dispatch_id not in blocked]
    won: set[int] = set()
    if claimed:
        rows = await conn.fetch(
            _CLAIM,
            [op.claims[k].dispatch_id for k in claimed],
            [ids[k] for k in claimed],
            [op.claims[k].attempt for k in claimed],
            [op.claims[k].idempotency_key for k in claimed],
            float(op.now),
            op.instance,
        )
        won = {int(r[0]) for r in rows}
    out: list[int | None] = []
    for k, c in enumerate(op.claims):
        if c.dispatch_id in blocked:
            out.append(0)
        elif k in ids and ids[k] in won:
            out.append(ids[k])
        else:
            out.append(None)
    await _settle_blocked(conn, blocked, op.now)  # their skipped runs take ids past the claims'
    return out


async def _claim_keys(conn: asyncpg.Connection, op: ClaimRuns, ids: dict[int, int]) -> set[int]:
    """Claim each locked dispatch's idempotency key for its run; the dispatches whose
    key is taken (settled ``skipped`` by ``_settle_blocked``). Claims of one key in one
    op: the first wins, as one by one."""
    wanted = [
        ledger.KeyClaim(c.idempotency_key, c.job_id, c.dispatch_id, ids[k], c.key_ttl)
        for k, c in sorted((k, op.claims[k]) for k in ids)
        if c.idempotency_key is not None
    ]
    if not wanted:
        return set()
    won = await ledger.claim_many(conn, wanted, op.now)
    winner: dict[str, int] = {}
    for w in wanted:
        if w.key in won:
            winner.setdefault(w.key, w.dispatch_id)
    return {w.dispatch_id for w in wanted if winner.get(w.key) != w.dispatch_id}


async def _settle_blocked(conn: asyncpg.Connection, blocked: set[int], now: float) -> None:
    skip = [
        Settle(dispatch_id=d, status="done", outcome="skipped", reason="idempotency-skip")
        for d in sorted(blocked)
    ]
    if skip:
        await settle_queued(conn, SettleQueued(skip, now))


# every outcome of the op in one statement each: the runs, the requeued dispatches,
# the ended ones, each fenced (the run still running, the dispatch still its run's) and
# led by ``id = ANY`` to the primary key. The runs are first locked and their status
# read by id alone: a ``status = 'running'`` filter would lead the planner to the
# running-only indexes, whose dead entries grow with the throughput until a vacuum.
_LOCK_RUNS = (
    "SELECT r.id, r.status FROM (SELECT DISTINCT u.id FROM unnest($1::bigint[]) AS u(id)"
    " ORDER BY u.id) u, LATERAL (SELECT id, status FROM runs WHERE id = u.id FOR UPDATE) r"
)
_FINISH_RUNS = (
    "UPDATE runs r SET status = f.outcome, finished_at = $1, error = f.error,"
    " result = f.result, reason = f.reason, exit_code = f.exit_code, signal = f.signal,"
    " timed_out = f.timed_out, stdout = f.stdout, stderr = f.stderr, details = f.details"
    " FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::text[],"
    " $7::integer[], $8::integer[], $9::integer[], $10::text[], $11::text[], $12::bytea[])"
    " AS f(id, outcome, error, result, reason, exit_code, signal, timed_out, stdout, stderr,"
    " details) WHERE r.id = ANY($2::bigint[]) AND r.id = f.id"
)
_REQUEUE = (
    "UPDATE dispatches d SET status = 'queued', seq = nextval('dispatch_seq'), origin = $1,"
    " not_before = f.not_before, outcome = f.outcome, last_error = f.error,"
    " current_run_id = NULL, updated_at = $2, attempt = d.attempt - f.refund,"
    " agent = NULL, assigned_at = NULL"
    " FROM unnest($3::bigint[], $4::bigint[], $5::float8[], $6::text[], $7::text[],"
    " $8::integer[]) AS f(dispatch_id, run_id, not_before, outcome, error, refund)"
    " WHERE d.id = ANY($3::bigint[]) AND d.id = f.dispatch_id AND d.current_run_id = f.run_id"
    " RETURNING f.run_id, d.seq"
)
_END = (
    "UPDATE dispatches d SET status = f.status, outcome = f.outcome,"
    " dead_reason = f.dead_reason, last_error = f.error, result = f.result, updated_at = $1"
    " FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],"
    " $8::bytea[]) AS f(dispatch_id, run_id, status, outcome, dead_reason, error, result)"
    " WHERE d.id = ANY($2::bigint[]) AND d.id = f.dispatch_id AND d.current_run_id = f.run_id"
    " RETURNING f.run_id"
)
_FINAL_STATUS = {"done": "done", "dead": "dead", "cancelled": "cancelled"}


async def finish_runs(conn: asyncpg.Connection, op: FinishRuns) -> Finished:
    """Each outcome, fenced; then the chain children of the runs that ended their
    dispatch ``done`` or ``dead`` (a cancelled run fires none), in this transaction.
    A run named twice in one op: its first outcome is the one (the second finds it no
    longer running, as one by one). One statement when it fits (``claims_fast``)."""
    if claims_fast.one_finish_fits(op):
        return await claims_fast.finish_in_one(conn, op)
    finished: Finished = await _fenced_finishes(conn, op)
    return finished


async def _finish_runs_op(conn: asyncpg.Connection, op: FinishRuns) -> Finished:
    now = float(op.now)
    await ledger.release_runs(conn, [f.run_id for f in op.finals if f.outcome != "ok"], now)
    first: dict[int, FinishRun] = {}
    for f in op.finals:
        first.setdefault(f.run_id, f)
    unique = list(first.values())
    accepted = await _finish_runs(conn, unique, now)
    good = [f for f in unique if f.run_id in accepted]
    requeued = await _requeue(conn, [f for f in good if f.next in ("retry", "requeue")], op)
    finals = [f for f in good if f.next not in ("retry", "requeue")]
    ended_ids = await _end(conn, finals, now)
    for f in finals:
        if f.run_id in ended_ids and f.next == "dead":
            await alerts.queue_alert(conn, f.dispatch_id, op.now, op.alert)
    out: list[int | None] = []
    for f in op.finals:
        if first[f.run_id] is not f or f.run_id not in accepted:
            out.append(None)
        elif f.next in ("retry", "requeue"):
            out.append(requeued.get(f.run_id))
        else:
            out.append(0 if f.run_id in ended_ids else None)
    ended = [f for f in finals if f.run_id in ended_ids and f.next != "cancelled"]
    return Finished(out, await chains.fire_children(conn, ended, op.origin, op.now))


async def _finish_runs(conn: asyncpg.Connection, unique: list[FinishRun], now: float) -> set[int]:
    """Write each run's outcome where it is still running (its row locked first, so a
    rescue on another node either went before and wins or waits); the run ids accepted."""
    if not unique:
        return set()
    locked = await conn.fetch(_LOCK_RUNS, [f.run_id for f in unique])
    running = {int(r[0]) for r in locked if r[1] == "running"}
    finals = [f for f in unique if f.run_id in running]
    if not finals:
        return set()
    await conn.execute(
        _FINISH_RUNS,
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
    )
    return running


async def _requeue(
    conn: asyncpg.Connection, finals: list[FinishRun], op: FinishRuns
) -> dict[int, int]:
    """Queue each dispatch again with a new seq where the run is still its current
    one; run id → the new seq."""
    if not finals:
        return {}
    rows = await conn.fetch(
        _REQUEUE,
        op.origin,
        float(op.now),
        [f.dispatch_id for f in finals],
        [f.run_id for f in finals],
        [float(f.not_before or op.now) for f in finals],
        [f.outcome for f in finals],
        [f.error for f in finals],
        [int(f.refund) for f in finals],
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def _end(conn: asyncpg.Connection, finals: list[FinishRun], now: float) -> set[int]:
    """End each dispatch (done, dead, cancelled) where the run is still its current
    one; the run ids whose dispatch ended."""
    if not finals:
        return set()
    rows = await conn.fetch(
        _END,
        now,
        [f.dispatch_id for f in finals],
        [f.run_id for f in finals],
        [_FINAL_STATUS[f.next] for f in finals],
        [f.outcome for f in finals],
        [f.dead_reason for f in finals],
        [f.error for f in finals],
        [f.result for f in finals],
    )
    return {int(r[0]) for r in rows}


# the ops ``claims_fast`` does not serve, behind the node's epoch check
_fenced_claims = cluster.fence_claims(_claim_runs)
_fenced_finishes = cluster.fence_finishes(_finish_runs_op)
