"""SQL of the claim and outcome ops (``ClaimRuns``, ``FinishRuns``), with their fencing:
conditional UPDATEs on ``status`` and ``current_run_id``.

A dispatcher pass's common case takes one ``executemany`` per table: claims whose keys
are all won (``ledger.claim_many``) and dispatches all still queued, outcomes that all
end their dispatch ``done`` with every run still running and still its dispatch's
(``_all_done``, under a savepoint). Anything else is decided row by row, with the same
answers."""

from __future__ import annotations

import sqlite3

from shepherd.store.ops import ClaimRuns, FinishRun, FinishRuns, Settle, SettleQueued
from shepherd.store.ops.chains import Finished
from shepherd.store.sqlite import alerts, chains, ledger
from shepherd.store.sqlite.dispatches import next_id
from shepherd.store.sqlite.runs import settle_queued


def claim_runs(conn: sqlite3.Connection, op: ClaimRuns) -> list[int | None]:
    run_id = next_id(conn, "runs")
    ids = list(range(run_id, run_id + len(op.claims)))
    blocked = _claim_keys(conn, op, ids)
    out = _claim_unblocked(conn, op, ids, blocked)
    _settle_blocked(conn, blocked, op.now)  # their skipped runs take ids past the claims'
    return out


def _claim_unblocked(
    conn: sqlite3.Connection, op: ClaimRuns, ids: list[int], blocked: set[int]
) -> list[int | None]:
    claim_sql = (
        "UPDATE dispatches SET status = 'running', attempt = ?, current_run_id = ?,"
        " updated_at = ? WHERE id = ? AND status = 'queued'"
    )
    run_sql = (
        "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
        " heartbeat_at, idempotency_key, instance)"
        " SELECT ?, id, job_id, job_name, ?, 'running', ?, ?, ?, ? FROM dispatches"
        " WHERE id = ? AND current_run_id = ?"
    )
    cur = conn.executemany(
        claim_sql,
        [
            (c.attempt, r, op.now, c.dispatch_id)
            for c, r in zip(op.claims, ids, strict=False)
            if c.dispatch_id not in blocked
        ],
    )
    if cur.rowcount == len(op.claims) and not blocked:  # the common case: every claim won
        conn.executemany(
            run_sql,
            [
                (r, c.attempt, op.now, op.now, c.idempotency_key, op.instance, c.dispatch_id, r)
                for c, r in zip(op.claims, ids, strict=False)
            ],
        )
        return list(ids)
    out: list[int | None] = []
    for c, r in zip(op.claims, ids, strict=False):
        if c.dispatch_id in blocked:
            out.append(0)
            continue
        row = conn.execute(
            "SELECT current_run_id FROM dispatches WHERE id = ? AND status = 'running'",
            (c.dispatch_id,),
        ).fetchone()
        if row is None or row[0] != r:
            out.append(None)
            continue
        conn.execute(
            run_sql,
            (r, c.attempt, op.now, op.now, c.idempotency_key, op.instance, c.dispatch_id, r),
        )
        out.append(r)
    return out


def _claim_keys(conn: sqlite3.Connection, op: ClaimRuns, ids: list[int]) -> set[int]:
    """Claim each run's idempotency key; the dispatches whose key is taken (settled
    ``skipped`` by ``_settle_blocked``). Only for dispatches still queued: one cancelled,
    withdrawn or claimed elsewhere since the dispatcher read it must not hold its key
    (a later dispatch with that key would be skipped)."""
    live = _queued(conn, [c.dispatch_id for c in op.claims if c.idempotency_key is not None])
    wanted: list[ledger.KeyClaim] = [
        (c.idempotency_key, c.job_id, c.dispatch_id, r, op.now, op.now + c.key_ttl)
        for c, r in zip(op.claims, ids, strict=False)
        if c.idempotency_key is not None and c.dispatch_id in live
    ]
    won = ledger.claim_many(conn, wanted)
    return {w[2] for w in wanted if w[3] not in won}


# by the primary key: ``+status`` keeps the planner off the status indexes, whose
# ``status = 'queued'`` range is the whole backlog (a scan of it per claim, without
# statistics SQLite prefers that index to the id list)
QUEUED_AMONG = "SELECT id FROM dispatches WHERE +status = 'queued' AND id IN ({marks})"


def _queued(conn: sqlite3.Connection, dispatch_ids: list[int]) -> set[int]:
    live: set[int] = set()
    for k in range(0, len(dispatch_ids), 500):
        part = dispatch_ids[k : k + 500]
        sql = QUEUED_AMONG.format(marks=",".join("?" * len(part)))
        live.update(row[0] for row in conn.execute(sql, part))
    return live


def _settle_blocked(conn: sqlite3.Connection, blocked: set[int], now: float) -> None:
    skip = [
        Settle(dispatch_id=d, status="done", outcome="skipped", reason="idempotency-skip")
        for d in sorted(blocked)
    ]
    if skip:
        settle_queued(conn, SettleQueued(skip, now))


_FINISH_RUN = (
    "UPDATE runs SET status = ?, finished_at = ?, error = ?, result = ?, reason = ?,"
    " exit_code = ?, signal = ?, timed_out = ?, stdout = ?, stderr = ?, details = ?"
    " WHERE id = ? AND status = 'running'"
)
_END = (
    "UPDATE dispatches SET status = ?, outcome = ?, dead_reason = ?, last_error = ?,"
    " result = ?, updated_at = ? WHERE id = ? AND current_run_id = ?"
)


def _run_row(f: FinishRun, now: float) -> tuple[object, ...]:
    return (
        f.outcome,
        now,
        f.error,
        f.result,
        f.reason,
        f.exit_code,
        f.signal,
        int(f.timed_out),
        f.stdout,
        f.stderr,
        f.details,
        f.run_id,
    )


def finish_runs(conn: sqlite3.Connection, op: FinishRuns) -> Finished:
    """Each outcome, fenced; then the chain children of the runs that ended their
    dispatch ``done`` or ``dead`` (a cancelled run fires none), in this transaction."""
    ledger.release_runs(conn, [f.run_id for f in op.finals if f.outcome != "ok"], op.now)
    if all(f.next == "done" for f in op.finals) and (done := _all_done(conn, op)) is not None:
        return done
    out: list[int | None] = []
    ended: list[FinishRun] = []  # accepted, final for their dispatch
    next_seq: int | None = None
    for f in op.finals:
        cur = conn.execute(_FINISH_RUN, _run_row(f, op.now))
        if cur.rowcount != 1:
            out.append(None)
            continue
        if f.next in ("retry", "requeue"):
            if next_seq is None:
                next_seq = next_id(conn, "dispatches", "seq")
            cur = conn.execute(
                "UPDATE dispatches SET status = 'queued', seq = ?, origin = ?, not_before = ?,"
                " outcome = ?, last_error = ?, current_run_id = NULL, updated_at = ?,"
                " agent = NULL, assigned_at = NULL,"
                " attempt = attempt - ? WHERE id = ? AND current_run_id = ?",
                (
                    next_seq,
                    op.origin,
                    f.not_before or op.now,
                    f.outcome,
                    f.error,
                    op.now,
                    int(f.refund),
                    f.dispatch_id,
                    f.run_id,
                ),
            )
            if cur.rowcount == 1:
                out.append(next_seq)
                next_seq += 1
            else:
                out.append(None)
            continue
        status = {"done": "done", "dead": "dead", "cancelled": "cancelled"}[f.next]
        cur = conn.execute(
            _END,
            (status, f.outcome, f.dead_reason, f.error, f.result, op.now, f.dispatch_id, f.run_id),
        )
        if cur.rowcount == 1 and status == "dead":
            alerts.queue_alert(conn, f.dispatch_id, op.now, op.alert)
        if cur.rowcount == 1 and status != "cancelled":
            ended.append(f)
        out.append(0 if cur.rowcount == 1 else None)
    return Finished(out, chains.fire_children(conn, ended, op.origin, op.now))


def _all_done(conn: sqlite3.Connection, op: FinishRuns) -> Finished | None:
    """The common case, every outcome ending its dispatch ``done``, in one statement per
    table: when every run was still running and every dispatch still its run's, the
    result ``finish_runs`` gives one by one; else None, with nothing written (a
    savepoint), and ``finish_runs`` decides them one by one."""
    conn.execute("SAVEPOINT all_done")
    n = len(op.finals)
    if conn.executemany(_FINISH_RUN, [_run_row(f, op.now) for f in op.finals]).rowcount == n:
        rows = [
            ("done", f.outcome, f.dead_reason, f.error, f.result, op.now, f.dispatch_id, f.run_id)
            for f in op.finals
        ]
        if conn.executemany(_END, rows).rowcount == n:
            conn.execute("RELEASE all_done")
            return Finished([0] * n, chains.fire_children(conn, op.finals, op.origin, op.now))
    conn.execute("ROLLBACK TO all_done")
    conn.execute("RELEASE all_done")
    return None
