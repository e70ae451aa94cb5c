"""Read queries: synchronous functions on a sqlite3 connection, returning row models.

They run on the store's reader connection (its own thread), never on the writer's.
The module is long because the reads of the core tables (jobs, dispatches, runs) live
together with the row decoders and the keyset filters they share.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from shepherd.store.models import PRIORITIES, Dispatch, JobRow, JobSpec, Run, _dec_hook

__all__ = [
    "DISPATCH_COLUMNS",
    "dispatch_by_key",
    "dispatch_from_row",
    "get_dispatch",
    "get_job",
    "get_run",
    "jobs_by_id",
    "latest_instance",
    "list_dispatches",
    "list_jobs",
    "list_runs",
    "queued_since",
    "schedule_states",
    "stats",
]

_spec_decoder = msgspec.json.Decoder(JobSpec, dec_hook=_dec_hook)

DISPATCH_COLUMNS = (
    "id, seq, job_id, job_name, kind, status, priority, not_before, expires_at, attempt,"
    " max_attempts, payload, idempotency_key, slot, parent_run_id, created_at, updated_at,"
    " outcome, dead_reason, last_error, current_run_id, result,"
    " needs, owner, agent, wait_reason"
)
_RUN_COLUMNS = (
    "id, dispatch_id, job_id, job_name, attempt, status, started_at, finished_at,"
    " heartbeat_at, error, result, idempotency_key, reason, exit_code, signal, timed_out,"
    " stdout, stderr, details, pgid, process, agent"
)
_JOB_COLUMNS = (
    "id, spec, next_run_at, last_run_at, last_status, consecutive_errors, created_at, updated_at,"
    " anchor"
)


def _json(blob: bytes | None) -> Any:
    return None if blob is None else msgspec.json.decode(blob)


def dispatch_from_row(r: tuple[Any, ...]) -> Dispatch:
    return Dispatch(
        id=r[0],
        seq=r[1],
        job_id=r[2],
        job_name=r[3],
        kind=r[4],
        status=r[5],
        priority=PRIORITIES[r[6]],
        not_before=r[7],
        expires_at=r[8],
        attempt=r[9],
        max_attempts=r[10],
        payload=_json(r[11]),
        idempotency_key=r[12],
        slot=r[13],
        parent_run_id=r[14],
        created_at=r[15],
        updated_at=r[16],
        outcome=r[17],
        dead_reason=r[18],
        last_error=r[19],
        current_run_id=r[20],
        result=_json(r[21]),
        needs=r[22].split(",") if r[22] else [],
        owner=r[23],
        agent=r[24],
        wait_reason=r[25],
    )


def _run_from_row(r: tuple[Any, ...]) -> Run:
    return Run(
        id=r[0],
        dispatch_id=r[1],
        job_id=r[2],
        job_name=r[3],
        attempt=r[4],
        status=r[5],
        started_at=r[6],
        finished_at=r[7],
        heartbeat_at=r[8],
        error=r[9],
        result=_json(r[10]),
        idempotency_key=r[11],
        reason=r[12],
        exit_code=r[13],
        signal=r[14],
        timed_out=bool(r[15]),
        stdout=r[16],
        stderr=r[17],
        details=_json(r[18]),
        pgid=r[19],
        process=r[20],
        agent=r[21],
    )


def job_from_row(r: tuple[Any, ...]) -> JobRow:
    return JobRow(
        id=r[0],
        spec=_spec_decoder.decode(r[1]),
        next_run_at=r[2],
        last_run_at=r[3],
        last_status=r[4],
        consecutive_errors=r[5],
        created_at=r[6],
        updated_at=r[7],
        anchor=r[8],
    )


def get_job(conn: sqlite3.Connection, ref: str | int) -> JobRow | None:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ? OR name = ?", (int(ref), str(ref))
        ).fetchone()
    else:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE name = ?", (ref,)).fetchone()
    return None if row is None else job_from_row(row)


def list_jobs(conn: sqlite3.Connection) -> list[JobRow]:
    rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY name").fetchall()
    return [job_from_row(r) for r in rows]


def jobs_by_id(conn: sqlite3.Connection, ids: list[int]) -> dict[int, JobRow]:
    """The jobs among ``ids`` that exist, by id."""
    out: dict[int, JobRow] = {}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        for r in conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN ({marks})", part):
            out[r[0]] = job_from_row(r)
    return out


def schedule_states(conn: sqlite3.Connection, job_ids: list[int]) -> dict[int, str]:
    """Status of the latest ``schedule`` (or ``spawn``: a spawned one-shot's) dispatch
    of each job in ``job_ids`` that has one."""
    out: dict[int, str] = {}
    for i in range(0, len(job_ids), 500):
        part = job_ids[i : i + 500]
        marks = ",".join("?" * len(part))
        for job_id, status in conn.execute(
            "SELECT job_id, status FROM dispatches WHERE kind IN ('schedule', 'spawn')"
            f" AND slot IS NOT NULL"
            f" AND job_id IN ({marks}) ORDER BY id",
            part,
        ):
            out[int(job_id)] = str(status)
    return out


def get_dispatch(conn: sqlite3.Connection, dispatch_id: int) -> Dispatch | None:
    row = conn.execute(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches WHERE id = ?", (dispatch_id,)
    ).fetchone()
    return None if row is None else dispatch_from_row(row)


def _where(**columns: Any) -> tuple[str, list[Any]]:
    """``WHERE a = ? AND b = ?`` over the columns given a value (``None``: no filter)."""
    used = [(name, value) for name, value in columns.items() if value is not None]
    clause = f"WHERE {' AND '.join(f'{name} = ?' for name, _ in used)}" if used else ""
    return clause, [value for _, value in used]


def list_dispatches(
    conn: sqlite3.Connection,
    *,
    status: str | Sequence[str] | None = None,
    job: str | None = None,
    limit: int = 100,
    before: int | None = None,
    priority: str | None = None,
    agent: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Dispatch]:
    """Newest first. ``before``: only ids below it (keyset pagination: the next page
    starts below the last id seen, never an OFFSET); ``since`` / ``until`` bound
    ``created_at`` (since <= created_at < until)."""
    clause, args = _keyset(
        _where(job_name=job, agent=agent, priority=None if priority is None else _rank(priority)),
        status=status, before=before, column="created_at", since=since, until=until,
    )  # fmt: skip
    rows = conn.execute(
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches {clause} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    return [dispatch_from_row(r) for r in rows]


def _rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else -1


def _keyset(
    where: tuple[str, list[Any]],
    *,
    status: str | Sequence[str] | None,
    before: int | None,
    column: str,
    since: float | None,
    until: float | None,
) -> tuple[str, list[Any]]:
    """``where`` extended with a status set, ``id < before`` and a time range."""
    clause, args = where
    parts = [clause.removeprefix("WHERE ")] if clause else []
    statuses = [status] if isinstance(status, str) else list(status or ())
    if statuses:
        parts.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    for cond, value in (("id < ?", before), (f"{column} >= ?", since), (f"{column} < ?", until)):
        if value is not None:
            parts.append(cond)
            args.append(value)
    return (f"WHERE {' AND '.join(parts)}" if parts else ""), args


def queued_since(
    conn: sqlite3.Connection, after_seq: int, *, exclude_origin: str | None = None
) -> list[Dispatch]:
    """Queued dispatches with ``seq > after_seq`` (all of them with ``after_seq=0``).

    The dispatcher runs this on every wake-up from another process, so its cost must
    not grow with the queue: the partial index ``dispatches_queued`` (seq, queued rows
    only) serves both the range and the order. Left to itself the planner prefers the
    equality on ``dispatches_status`` and sorts every queued row in a temp B-tree;
    ``INDEXED BY`` pins the plan (and makes the statement fail, not slow down, if the
    index ever went away). The plan is asserted in tests/store/test_reload_plan.py."""
    sql = (
        f"SELECT {DISPATCH_COLUMNS} FROM dispatches INDEXED BY dispatches_queued"
        " WHERE status = 'queued' AND seq > ?"
    )
    args: list[Any] = [after_seq]
    if exclude_origin is not None:
        sql += " AND origin != ?"
        args.append(exclude_origin)
    return [dispatch_from_row(r) for r in conn.execute(sql + " ORDER BY seq", args)]


def cancel_requests(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return [
        (int(r[0]), str(r[1]))
        for r in conn.execute(
            "SELECT id, status FROM dispatches"
            " WHERE cancel_requested = 1 AND status IN ('queued', 'running')"
        )
    ]


def get_run(conn: sqlite3.Connection, run_id: int) -> Run | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else _run_from_row(row)


def list_runs(
    conn: sqlite3.Connection,
    *,
    job: str | None = None,
    status: str | Sequence[str] | None = None,
    dispatch_id: int | None = None,
    limit: int = 100,
    before: int | None = None,
    agent: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Run]:
    """Newest first; ``before`` / ``since`` / ``until`` as ``list_dispatches``
    (the range bounds ``started_at``)."""
    clause, args = _keyset(
        _where(job_name=job, dispatch_id=dispatch_id, agent=agent),
        status=status, before=before, column="started_at", since=since, until=until,
    )  # fmt: skip
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs {clause} ORDER BY id DESC LIMIT ?", [*args, limit]
    ).fetchall()
    return [_run_from_row(r) for r in rows]


def stats(conn: sqlite3.Connection) -> dict[str, Any]:
    by_state = dict(conn.execute("SELECT status, COUNT(*) FROM dispatches GROUP BY status"))
    runs_running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()
    jobs = conn.execute("SELECT COUNT(*), COALESCE(SUM(enabled), 0) FROM jobs").fetchone()
    return {
        "dispatches": {
            s: int(by_state.get(s, 0))
            for s in ("queued", "awaiting_approval", "running", "done", "cancelled", "dead")
        },
        "approvals_pending": int(
            conn.execute("SELECT COUNT(*) FROM approvals WHERE status = 'pending'").fetchone()[0]
        ),
        "runs_running": int(runs_running[0]),
        "jobs": int(jobs[0]),
        "jobs_enabled": int(jobs[1]),
    }


def dispatch_by_key(conn: sqlite3.Connection, job_id: int, key: str | None) -> int:
    """The dispatch of ``job_id`` bound to the producer's idempotency ``key``, whatever
    its state (0: none)."""
    row = conn.execute(
        "SELECT id FROM dispatches WHERE job_id = ? AND producer_key = ?", (job_id, key)
    ).fetchone()
    return int(row[0]) if row else 0


def latest_instance(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The most recently updated runtime's row of ``instances`` (None if there is none)."""
    row = conn.execute(
        "SELECT instance, pid, started_at, updated_at, stopped_at, status FROM instances"
        " ORDER BY updated_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return {
        "instance": row[0],
        "pid": row[1],
        "started_at": row[2],
        "updated_at": row[3],
        "stopped_at": row[4],
        "health": msgspec.json.decode(row[5]) if row[5] else {},
    }
