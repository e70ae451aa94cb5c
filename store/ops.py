"""Write operations: typed requests and the SQL that performs each one.

Every state transition is one ``WriteOp`` struct. The store applies a batch of them in
one transaction (group commit), each inside its own SAVEPOINT so one failing op does
not undo the others. ``apply_op`` is synchronous and runs on the database thread.

Fencing: a run's outcome is accepted only while that run is ``running`` and is still
the current run of its dispatch (``FinishRun``); a claim only takes a ``queued``
dispatch (``ClaimRun``). Both are conditional UPDATEs, so two writers, or a late
completion after a timeout, can never both win.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

import msgspec

from store import ledger
from store import messages as _messages

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
    "PurgeDead",
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


class NewDispatch(msgspec.Struct, frozen=True, kw_only=True):
    job_id: int
    job_name: str
    kind: str
    priority: int
    not_before: float
    max_attempts: int
    expires_at: float | None = None
    payload: bytes | None = None
    idempotency_key: str | None = None
    slot: float | None = None
    parent_run_id: int | None = None
    attempt: int = 0


class InsertDispatches(msgspec.Struct, frozen=True, tag=True):
    """Returns ``list[tuple[id, seq] | None]``; None where a slot or key already exists."""

    rows: list[NewDispatch]
    origin: str
    now: float


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


class Settle(msgspec.Struct, frozen=True, kw_only=True):
    dispatch_id: int
    status: str  # done | dead | cancelled
    outcome: str  # skipped | cancelled | ...
    reason: str
    record_run: bool = True  # leave a ``skipped`` run row saying why


class SettleQueued(msgspec.Struct, frozen=True, tag=True):
    """Queued dispatches that end without running (skipped, expired, job removed).
    Returns ``list[bool]``: whether each was still queued."""

    items: list[Settle]
    now: float


class RecoverOrphans(msgspec.Struct, frozen=True, tag=True):
    """Runs left ``running`` by a dead process → ``crashed``; at-least-once dispatches
    are requeued for exactly one replay, at-most-once ones dead-lettered (``crashed``).
    Returns ``list[tuple[run_id, dispatch_id, action]]``."""

    now: float
    origin: str


class CancelDispatch(msgspec.Struct, frozen=True, tag=True):
    """Queued → cancelled at once; running → ``cancel_requested`` (the owner stops it).
    Returns the dispatch status after the call, or None if there is no such dispatch."""

    dispatch_id: int
    now: float


class RetryDead(msgspec.Struct, frozen=True, tag=True):
    """Dead → queued with fresh attempts. Returns the ids requeued."""

    ids: list[int]
    now: float
    origin: str = ""


class PurgeDead(msgspec.Struct, frozen=True, tag=True):
    """Delete dead letters (and their runs): the given ids, or all older than ``before``."""

    ids: list[int] | None = None
    before: float | None = None


class SaveJob(msgspec.Struct, frozen=True, tag=True):
    """Insert or replace a job by name. Returns the job id."""

    name: str
    executor: str
    enabled: bool
    spec: bytes
    next_run_at: float | None
    now: float
    anchor: float | None = None


class DeleteJob(msgspec.Struct, frozen=True, tag=True):
    """Remove a job; its queued dispatches are cancelled. Returns True if it existed."""

    job_id: int
    now: float


class SetJobState(msgspec.Struct, frozen=True, tag=True):
    job_id: int
    now: float
    next_run_at: float | None = None
    set_next: bool = False
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int | None = None
    enabled: bool | None = None


class Heartbeats(msgspec.Struct, frozen=True, tag=True):
    """Stamp ``heartbeat_at`` on running runs, many per commit."""

    items: list[tuple[int, float]]


class SaveStatus(msgspec.Struct, frozen=True, tag=True):
    """The runtime's health snapshot, for ``status`` in other processes."""

    instance: str
    pid: int
    started_at: float
    now: float
    status: bytes
    stopped: bool = False


class SkippedSlot(msgspec.Struct, frozen=True, kw_only=True):
    """A scheduled slot that does not run: recorded as a ``skipped`` run with the reason."""

    slot: float | None
    reason: str  # missed | backoff | duplicate-slot
    error: str


class SlotItem(msgspec.Struct, frozen=True, kw_only=True):
    """One job's part of a ``RecordSlots`` op.

    ``next_run_at``, the dispatches and the skipped records are written only if the
    job is still enabled and its stored ``next_run_at`` is still ``expect_next``
    (compare-and-set: a concurrent change of the job wins, the scheduler reloads it).
    ``last_*`` / ``consecutive_errors`` are written whenever the job exists. ``finish``
    ends a job after its last run: ``disable`` (writing ``spec``) or ``delete``.
    """

    job_id: int
    job_name: str
    expect_next: float | None = None
    set_next: bool = True
    next_run_at: float | None = None
    dispatches: list[NewDispatch] = msgspec.field(default_factory=list)
    skipped: list[SkippedSlot] = msgspec.field(default_factory=list)
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int | None = None
    finish: Literal["", "disable", "delete"] = ""
    spec: bytes | None = None


class RecordSlots(msgspec.Struct, frozen=True, tag=True):
    """The scheduler's commit: for each job, its due slots' dispatches (kind
    ``schedule``, unique per (job, slot)), a record for every slot that does not run,
    its next fire time and its run bookkeeping, in one transaction. Returns per item
    ``None`` when the compare-and-set failed (job gone, disabled or changed), else
    ``list[tuple[id, seq] | None]`` for its dispatches (None: the slot already has one)."""

    items: list[SlotItem]
    origin: str
    now: float


WriteOp = (
    InsertDispatches
    | ClaimRuns
    | FinishRuns
    | SettleQueued
    | RecoverOrphans
    | CancelDispatch
    | RetryDead
    | PurgeDead
    | SaveJob
    | DeleteJob
    | SetJobState
    | RecordSlots
    | Heartbeats
    | SaveStatus
    | _messages.MessageOp  # inboxes and deliveries: store/messages.py
)


def _next_id(conn: sqlite3.Connection, table: str, column: str = "id") -> int:
    row = conn.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()
    return int(row[0]) + 1


_INSERT_DISPATCH = (
    "INSERT INTO dispatches (id, seq, origin, job_id, job_name, kind, status, priority,"
    " not_before, expires_at, attempt, max_attempts, payload, idempotency_key, slot,"
    " parent_run_id, created_at, updated_at)"
    " VALUES (?,?,?,?,?,?,'queued',?,?,?,?,?,?,?,?,?,?,?)"
)


def _dispatch_values(
    r: NewDispatch, dispatch_id: int, seq: int, origin: str, now: float
) -> tuple[Any, ...]:
    return (
        dispatch_id,
        seq,
        origin,
        r.job_id,
        r.job_name,
        r.kind,
        r.priority,
        r.not_before,
        r.expires_at,
        r.attempt,
        r.max_attempts,
        r.payload,
        r.idempotency_key,
        r.slot,
        r.parent_run_id,
        now,
        now,
    )


def _insert_dispatches(conn: sqlite3.Connection, op: InsertDispatches) -> list[Any]:
    next_id = _next_id(conn, "dispatches")
    next_seq = _next_id(conn, "dispatches", "seq")
    out: list[tuple[int, int] | None] = []
    plain: list[tuple[Any, ...]] = []
    sql = _INSERT_DISPATCH
    for r in op.rows:
        values = _dispatch_values(r, next_id, next_seq, op.origin, op.now)
        if r.slot is None and r.idempotency_key is None:
            plain.append(values)
        else:
            if r.idempotency_key is not None:
                k = r.idempotency_key
                row = conn.execute(
                    f"SELECT id FROM dispatches WHERE {ledger.SAME_KEY_SQL} AND job_id = ?"
                    " AND status IN ('queued', 'running', 'done')",
                    (k, k, k, r.job_id),
                ).fetchone()
                if row is not None:
                    out.append(None)
                    continue
            cur = conn.execute(sql.replace("INSERT", "INSERT OR IGNORE", 1), values)
            if cur.rowcount == 0:
                out.append(None)
                continue
        out.append((next_id, next_seq))
        next_id += 1
        next_seq += 1
    if plain:
        conn.executemany(sql, plain)
    return out


def _claim_runs(conn: sqlite3.Connection, op: ClaimRuns) -> list[int | None]:
    run_id = _next_id(conn, "runs")
    ids = list(range(run_id, run_id + len(op.claims)))
    blocked = _claim_keys(conn, op, ids)
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
    """Claim each run's idempotency key; settle the dispatches whose key is taken."""
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
        _settle_queued(
            conn,
            SettleQueued(
                [
                    Settle(
                        dispatch_id=c.dispatch_id,
                        status="done",
                        outcome="skipped",
                        reason="idempotency-skip",
                    )
                ],
                op.now,
            ),
        )
    return blocked


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


def _settle_queued(conn: sqlite3.Connection, op: SettleQueued) -> list[bool]:
    out: list[bool] = []
    run_id = _next_id(conn, "runs")
    for item in op.items:
        cur = conn.execute(
            "UPDATE dispatches SET status = ?, outcome = ?, dead_reason = ?, last_error = ?,"
            " updated_at = ? WHERE id = ? AND status = 'queued'",
            (
                item.status,
                item.outcome,
                item.reason if item.status == "dead" else None,
                item.reason,
                op.now,
                item.dispatch_id,
            ),
        )
        ok = cur.rowcount == 1
        if ok and item.record_run:
            conn.execute(
                "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status,"
                " started_at, finished_at, reason, error)"
                " SELECT ?, id, job_id, job_name, attempt, ?, ?, ?, ?, ? FROM dispatches"
                " WHERE id = ?",
                (run_id, item.outcome, op.now, op.now, item.reason, item.reason, item.dispatch_id),
            )
            run_id += 1
        out.append(ok)
    return out


def _recover_orphans(conn: sqlite3.Connection, op: RecoverOrphans) -> list[tuple[int, int, str]]:
    rows = conn.execute(
        "SELECT r.id, r.dispatch_id, j.spec, d.attempt,"
        " COALESCE(r.idempotency_key, d.idempotency_key) FROM runs r"
        " LEFT JOIN dispatches d ON d.id = r.dispatch_id"
        " LEFT JOIN jobs j ON j.id = r.job_id WHERE r.status = 'running'"
    ).fetchall()
    out: list[tuple[int, int, str]] = []
    seq = _next_id(conn, "dispatches", "seq")
    ledger.release_runs(conn, [int(r[0]) for r in rows], op.now)
    for run_id, dispatch_id, spec, attempt, key in rows:
        conn.execute(
            "UPDATE runs SET status = 'crashed', finished_at = ?,"
            " error = 'the process running it died', reason = 'orphaned' WHERE id = ?",
            (op.now, run_id),
        )
        guarantee = "at-most-once"
        if spec is not None:
            guarantee = msgspec.json.decode(spec).get("delivery_guarantee", guarantee)
        if dispatch_id is None:
            continue
        if guarantee == "at-least-once":
            conn.execute(
                "UPDATE dispatches SET status = 'queued', seq = ?, origin = ?, not_before = ?,"
                " max_attempts = MAX(max_attempts, attempt + 1), outcome = 'crashed',"
                " last_error = 'replayed after a crash', current_run_id = NULL,"
                " idempotency_key = ?, updated_at = ? WHERE id = ? AND status = 'running'",
                (
                    seq,
                    op.origin,
                    op.now,
                    ledger.replay_key(key, dispatch_id, (attempt or 0) + 1),
                    op.now,
                    dispatch_id,
                ),
            )
            seq += 1
            action = "replay"
        else:
            conn.execute(
                "UPDATE dispatches SET status = 'dead', outcome = 'crashed',"
                " dead_reason = 'crashed', last_error = 'the process running it died',"
                " updated_at = ? WHERE id = ? AND status = 'running'",
                (op.now, dispatch_id),
            )
            action = "dead"
        out.append((int(run_id), int(dispatch_id), action))
    # a dispatch marked running with no running run (cannot happen with one-transaction
    # claims, but a foreign writer or an old version could leave one): requeue it
    conn.execute(
        "UPDATE dispatches SET status = 'queued', current_run_id = NULL, updated_at = ?"
        " WHERE status = 'running' AND (current_run_id IS NULL OR current_run_id NOT IN"
        " (SELECT id FROM runs WHERE status = 'running'))"
        " AND id NOT IN (SELECT dispatch_id FROM runs WHERE status = 'crashed' AND"
        " finished_at = ?)",
        (op.now, op.now),
    )
    return out


def _cancel_dispatch(conn: sqlite3.Connection, op: CancelDispatch) -> str | None:
    row = conn.execute("SELECT status FROM dispatches WHERE id = ?", (op.dispatch_id,)).fetchone()
    if row is None:
        return None
    status = str(row[0])
    if status == "queued":
        conn.execute(
            "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled', updated_at = ?"
            " WHERE id = ?",
            (op.now, op.dispatch_id),
        )
        return "cancelled"
    if status == "running":
        conn.execute(
            "UPDATE dispatches SET cancel_requested = 1, updated_at = ? WHERE id = ?",
            (op.now, op.dispatch_id),
        )
    return status


def _retry_dead(conn: sqlite3.Connection, op: RetryDead) -> list[int]:
    done: list[int] = []
    seq = _next_id(conn, "dispatches", "seq")
    for dispatch_id in op.ids:
        cur = conn.execute(
            "UPDATE dispatches SET status = 'queued', seq = ?, origin = ?, attempt = 0,"
            " not_before = ?, dead_reason = NULL, expires_at = NULL, current_run_id = NULL,"
            " cancel_requested = 0, updated_at = ? WHERE id = ? AND status = 'dead'",
            (seq, op.origin, op.now, op.now, dispatch_id),
        )
        if cur.rowcount == 1:
            done.append(dispatch_id)
            seq += 1
    return done


def _purge_dead(conn: sqlite3.Connection, op: PurgeDead) -> int:
    args: list[Any]
    if op.ids is not None:
        marks = ",".join("?" * len(op.ids)) or "NULL"
        where, args = f"status = 'dead' AND id IN ({marks})", list(op.ids)
    elif op.before is not None:
        where, args = "status = 'dead' AND updated_at < ?", [op.before]
    else:
        where, args = "status = 'dead'", []
    conn.execute(
        f"DELETE FROM runs WHERE dispatch_id IN (SELECT id FROM dispatches WHERE {where})", args
    )
    return conn.execute(f"DELETE FROM dispatches WHERE {where}", args).rowcount


def _save_job(conn: sqlite3.Connection, op: SaveJob) -> int:
    row = conn.execute("SELECT id FROM jobs WHERE name = ?", (op.name,)).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO jobs (name, executor, enabled, spec, next_run_at, anchor, created_at,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                op.name,
                op.executor,
                int(op.enabled),
                op.spec,
                op.next_run_at,
                op.anchor,
                op.now,
                op.now,
            ),
        )
        return int(cur.lastrowid or 0)
    job_id = int(row[0])
    conn.execute(
        "UPDATE jobs SET executor = ?, enabled = ?, spec = ?, next_run_at = ?, anchor = ?,"
        " updated_at = ? WHERE id = ?",
        (op.executor, int(op.enabled), op.spec, op.next_run_at, op.anchor, op.now, job_id),
    )
    return job_id


def _delete_job(conn: sqlite3.Connection, op: DeleteJob) -> bool:
    conn.execute(
        "UPDATE dispatches SET status = 'cancelled', outcome = 'cancelled',"
        " last_error = 'job removed', updated_at = ? WHERE job_id = ? AND status = 'queued'",
        (op.now, op.job_id),
    )
    conn.execute(
        "UPDATE dispatches SET cancel_requested = 1 WHERE job_id = ? AND status = 'running'",
        (op.job_id,),
    )
    return conn.execute("DELETE FROM jobs WHERE id = ?", (op.job_id,)).rowcount == 1


def _set_job_state(conn: sqlite3.Connection, op: SetJobState) -> bool:
    sets, args = ["updated_at = ?"], [op.now]
    if op.set_next:
        sets.append("next_run_at = ?")
        args.append(op.next_run_at)  # type: ignore[arg-type]
    for column in ("last_run_at", "last_status", "consecutive_errors"):
        value = getattr(op, column)
        if value is not None:
            sets.append(f"{column} = ?")
            args.append(value)
    if op.enabled is not None:
        sets.append("enabled = ?")
        args.append(int(op.enabled))
    args.append(op.job_id)
    cur = conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", args)
    return cur.rowcount == 1


def _record_slots(conn: sqlite3.Connection, op: RecordSlots) -> list[Any]:
    bookkeeping = [
        (i.last_run_at, i.last_status, i.consecutive_errors, i.job_id)
        for i in op.items
        if i.last_run_at is not None or i.consecutive_errors is not None
    ]
    if bookkeeping:
        conn.executemany(
            "UPDATE jobs SET last_run_at = COALESCE(?, last_run_at),"
            " last_status = COALESCE(?, last_status),"
            " consecutive_errors = COALESCE(?, consecutive_errors) WHERE id = ?",
            bookkeeping,
        )
    out: list[list[tuple[int, int] | None] | None] = []
    rows: list[NewDispatch] = []
    owners: list[int] = []  # index into ``out`` of each row in ``rows``
    skipped: list[tuple[Any, ...]] = []
    for item, ok in zip(op.items, _compare_and_set(conn, op), strict=True):
        if not ok:
            out.append(None)
            continue
        out.append([])
        for d in item.dispatches:
            rows.append(d)
            owners.append(len(out) - 1)
        for s in item.skipped:
            details = None if s.slot is None else msgspec.json.encode({"slot": s.slot})
            skipped.append((item.job_id, item.job_name, op.now, op.now, s.reason, s.error, details))
        if item.finish == "delete":
            _delete_job(conn, DeleteJob(item.job_id, op.now))
        elif item.finish == "disable":
            conn.execute(
                "UPDATE jobs SET enabled = 0, next_run_at = NULL, spec = COALESCE(?, spec),"
                " updated_at = ? WHERE id = ?",
                (item.spec, op.now, item.job_id),
            )
    for owner, result in zip(owners, _insert_slots(conn, rows, op), strict=True):
        out[owner].append(result)  # type: ignore[union-attr]
    if skipped:
        run_id = _next_id(conn, "runs")
        conn.executemany(
            "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
            " finished_at, reason, error, details) VALUES (?, NULL, ?, ?, 0, 'skipped', ?, ?,"
            " ?, ?, ?)",
            [(run_id + i, *values) for i, values in enumerate(skipped)],
        )
    return out


def _compare_and_set(conn: sqlite3.Connection, op: RecordSlots) -> list[bool]:
    """Set next_run_at where it is still ``expect_next`` and the job enabled; True where
    that held, or for a bookkeeping-only item, where the job exists. One read and one
    batched update for all items (the writer's transaction makes it atomic)."""
    ids = sorted({i.job_id for i in op.items})
    state: dict[int, tuple[Any, int]] = {}
    for k in range(0, len(ids), 500):
        part = ids[k : k + 500]
        marks = ",".join("?" * len(part))
        for job_id, next_run_at, enabled in conn.execute(
            f"SELECT id, next_run_at, enabled FROM jobs WHERE id IN ({marks})", part
        ):
            state[job_id] = (next_run_at, enabled)
    ok: list[bool] = []
    for i in op.items:
        now = state.get(i.job_id)
        good = now is not None and (not i.set_next or now == (i.expect_next, 1))
        if good and i.set_next:
            state[i.job_id] = (i.next_run_at, 1)  # a later item of the same job sees it
        ok.append(good)
    conn.executemany(
        "UPDATE jobs SET next_run_at = ?, updated_at = ? WHERE id = ?",
        [
            (i.next_run_at, op.now, i.job_id)
            for i, g in zip(op.items, ok, strict=True)
            if g and i.set_next
        ],
    )
    return ok


def _insert_slots(
    conn: sqlite3.Connection, rows: list[NewDispatch], op: RecordSlots
) -> list[tuple[int, int] | None]:
    """Insert schedule dispatches; None where the (job, slot) pair already has one (the
    unique index ``dispatches_slot`` decides, so no lookup per row)."""
    if not rows:
        return []
    first_id, first_seq = _next_id(conn, "dispatches"), _next_id(conn, "dispatches", "seq")
    inserted = conn.executemany(
        _INSERT_DISPATCH.replace("INSERT", "INSERT OR IGNORE", 1),
        [
            _dispatch_values(r, first_id + k, first_seq + k, op.origin, op.now)
            for k, r in enumerate(rows)
        ],
    ).rowcount
    out: list[tuple[int, int] | None] = [(first_id + k, first_seq + k) for k in range(len(rows))]
    if inserted < len(rows):
        present = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM dispatches WHERE id >= ? AND id < ?",
                (first_id, first_id + len(rows)),
            )
        }
        out = [o if o is not None and o[0] in present else None for o in out]
    return out


def _heartbeats(conn: sqlite3.Connection, op: Heartbeats) -> int:
    cur = conn.executemany(
        "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'",
        [(at, run_id) for run_id, at in op.items],
    )
    return cur.rowcount


def _save_status(conn: sqlite3.Connection, op: SaveStatus) -> None:
    conn.execute(
        "INSERT INTO instances (instance, pid, started_at, updated_at, stopped_at, status)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(instance) DO UPDATE SET"
        " updated_at = excluded.updated_at, stopped_at = excluded.stopped_at,"
        " status = excluded.status",
        (op.instance, op.pid, op.started_at, op.now, op.now if op.stopped else None, op.status),
    )


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
        case _ if isinstance(op, _messages.MESSAGE_OP_TYPES):
            return _messages.apply_message_op(conn, op)
    raise TypeError(f"unknown write op {type(op).__name__}")
