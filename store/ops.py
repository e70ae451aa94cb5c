"""Write operations: typed requests and the SQL that performs each one.

Every state transition is one ``WriteOp`` struct. The store applies a batch of them in
one transaction (group commit), each inside its own SAVEPOINT so one failing op does
not undo the others. ``apply_op`` is synchronous and runs on the database thread.

Fencing: a run's outcome is accepted only while that run is ``running`` and is still
the current run of its dispatch (``FinishRun``); a claim only takes a ``queued``
dispatch (``ClaimRun``). Both are conditional UPDATEs, so two writers, or a late
completion after a timeout, can never both win.

The ops live in four modules: this one (claims, outcomes, the ``WriteOp`` union and
``apply_op``), ``store.ops_dispatch`` (new dispatches), ``store.ops_runs`` (settle,
recovery, dead letters, heartbeats, status) and ``store.ops_jobs`` (jobs and the
scheduler's ``RecordSlots``); the pruner's batched deletes are in ``store.prune``. Every
op is importable from here.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from shepherd.store import ledger
from shepherd.store import messages as _messages
from shepherd.store import prune as _prune
from shepherd.store.ops_dispatch import InsertDispatches, NewDispatch, _insert_dispatches, _next_id
from shepherd.store.ops_jobs import (
    DeleteJob,
    RecordSlots,
    SaveJob,
    SetJobState,
    SkippedSlot,
    SlotItem,
    _delete_job,
    _record_slots,
    _save_job,
    _set_job_state,
)
from shepherd.store.ops_runs import (
    CancelDispatch,
    Heartbeats,
    PurgeDead,
    RecordProcess,
    RecoverOrphans,
    RetryDead,
    SaveStatus,
    Settle,
    SettleQueued,
    _cancel_dispatch,
    _heartbeats,
    _purge_dead,
    _record_process,
    _recover_orphans,
    _retry_dead,
    _save_status,
    _settle_queued,
)
from shepherd.store.prune import (
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneKeys,
    PruneMessages,
    PruneRunsBefore,
    PruneRunsPerJob,
)

__all__ = [
    "CancelDispatch",
    "ClaimRun",
    "ClaimRuns",
    "DeleteJob",
    "FinishRun",
    "FinishRuns",
    "Heartbeats",
    "InsertDispatches",
    "NewDispatch",
    "PruneDeliveries",
    "PruneDispatches",
    "PruneKeys",
    "PruneMessages",
    "PruneRunsBefore",
    "PruneRunsPerJob",
    "Pruned",
    "PurgeDead",
    "RecordProcess",
    "RecordSlots",
    "RecoverOrphans",
    "RetryDead",
    "SaveJob",
    "SaveStatus",
    "SetJobState",
    "Settle",
    "SettleQueued",
    "SkippedSlot",
    "SlotItem",
    "WriteOp",
    "apply_op",
]


class ClaimRun(msgspec.Struct, frozen=True, kw_only=True):
    dispatch_id: int
    attempt: int
    idempotency_key: str | None = None
    job_id: int = 0
    key_ttl: float = ledger.DEFAULT_TTL


class ClaimRuns(msgspec.Struct, frozen=True, tag=True):
    """queued → running + a new run row + its idempotency key claimed. Returns
    ``list[run_id | None | 0]``: None when the dispatch is no longer queued, 0 when its
    key is claimed by another run (the dispatch is then recorded ``skipped``)."""

    claims: list[ClaimRun]
    instance: str
    now: float


class FinishRun(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    dispatch_id: int
    outcome: str
    next: str  # done | retry | dead | cancelled | requeue
    error: str | None = None
    result: bytes | None = None
    reason: str | None = None
    not_before: float | None = None  # for retry / requeue
    dead_reason: str | None = None
    refund: bool = False  # requeue without counting the attempt (a deferral)
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stdout: str | None = None
    stderr: str | None = None
    details: bytes | None = None


class FinishRuns(msgspec.Struct, frozen=True, tag=True):
    """Returns ``list[int | None]``: the new seq for requeued dispatches, 0 for accepted
    final outcomes, None where fencing rejected the outcome."""

    finals: list[FinishRun]
    now: float
    origin: str = ""


WriteOp = (
    InsertDispatches
    | ClaimRuns
    | FinishRuns
    | SettleQueued
    | RecoverOrphans
    | RecordProcess
    | CancelDispatch
    | RetryDead
    | PurgeDead
    | SaveJob
    | DeleteJob
    | SetJobState
    | RecordSlots
    | Heartbeats
    | _prune.PruneOp  # retention: store/prune.py
    | SaveStatus
    | _messages.MessageOp  # inboxes and deliveries: store/messages.py
)


def _claim_runs(conn: sqlite3.Connection, op: ClaimRuns) -> list[int | None]:
    run_id = _next_id(conn, "runs")
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
    ``skipped`` by ``_settle_blocked``)."""
    blocked: set[int] = set()
    for c, r in zip(op.claims, ids, strict=False):
        if c.idempotency_key is None:
            continue
        if ledger.claim(
            conn,
            c.idempotency_key,
            job_id=c.job_id,
            dispatch_id=c.dispatch_id,
            run_id=r,
            now=op.now,
            ttl=c.key_ttl,
        ):
            continue
        blocked.add(c.dispatch_id)
    return blocked


def _settle_blocked(conn: sqlite3.Connection, blocked: set[int], now: float) -> None:
    skip = [
        Settle(dispatch_id=d, status="done", outcome="skipped", reason="idempotency-skip")
        for d in sorted(blocked)
    ]
    if skip:
        _settle_queued(conn, SettleQueued(skip, now))


def _finish_runs(conn: sqlite3.Connection, op: FinishRuns) -> list[int | None]:
    out: list[int | None] = []
    next_seq: int | None = None
    ledger.release_runs(conn, [f.run_id for f in op.finals if f.outcome != "ok"], op.now)
    for f in op.finals:
        cur = conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, error = ?, result = ?, reason = ?,"
            " exit_code = ?, signal = ?, timed_out = ?, stdout = ?, stderr = ?, details = ?"
            " WHERE id = ? AND status = 'running'",
            (
                f.outcome,
                op.now,
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
            ),
        )
        if cur.rowcount != 1:
            out.append(None)
            continue
        if f.next in ("retry", "requeue"):
            if next_seq is None:
                next_seq = _next_id(conn, "dispatches", "seq")
            cur = conn.execute(
                "UPDATE dispatches SET status = 'queued', seq = ?, origin = ?, not_before = ?,"
                " outcome = ?, last_error = ?, current_run_id = NULL, updated_at = ?,"
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
            "UPDATE dispatches SET status = ?, outcome = ?, dead_reason = ?, last_error = ?,"
            " result = ?, updated_at = ? WHERE id = ? AND current_run_id = ?",
            (status, f.outcome, f.dead_reason, f.error, f.result, op.now, f.dispatch_id, f.run_id),
        )
        out.append(0 if cur.rowcount == 1 else None)
    return out


def apply_op(conn: sqlite3.Connection, op: WriteOp) -> Any:
    match op:
        case Heartbeats():
            return _heartbeats(conn, op)
        case SaveStatus():
            return _save_status(conn, op)
        case InsertDispatches():
            return _insert_dispatches(conn, op)
        case ClaimRuns():
            return _claim_runs(conn, op)
        case FinishRuns():
            return _finish_runs(conn, op)
        case CancelDispatch():
            return _cancel_dispatch(conn, op)
        case SettleQueued():
            return _settle_queued(conn, op)
        case RecoverOrphans():
            return _recover_orphans(conn, op)
        case RecordProcess():
            return _record_process(conn, op)
        case RetryDead():
            return _retry_dead(conn, op)
        case PurgeDead():
            return _purge_dead(conn, op)
        case SaveJob():
            return _save_job(conn, op)
        case DeleteJob():
            return _delete_job(conn, op)
        case SetJobState():
            return _set_job_state(conn, op)
        case RecordSlots():
            return _record_slots(conn, op)
        case (
            PruneRunsPerJob()
            | PruneRunsBefore()
            | PruneDispatches()
            | PruneMessages()
            | PruneDeliveries()
            | PruneKeys()
        ):
            return _prune.apply_prune_op(conn, op)
        case _ if isinstance(op, _messages.MESSAGE_OP_TYPES):
            return _messages.apply_message_op(conn, op)
    raise TypeError(f"unknown write op {type(op).__name__}")
