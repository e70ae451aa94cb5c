"""SQL of ``ImportBatch`` (store/ops/imports.py): one import in one transaction, its
items keyed in ``import_map`` (source, kind, source id) → the shepherd id and the
digest of the source row as last imported.

The jobs, agents and messages are written with the SQL the other ops use
(``save_job``, the agents' ``SaveAgent``, ``insert_messages``); the dispatches with the
shared insert and then ``approvals.gate`` (a gated job holds them as any insert does).
For a job that is updated and whose schedule (cron, tz, at, every) did not change, a
stored next fire time later than the imported one is kept: a slot shepherd has already
run is never run again.

The module is a little longer than most because each kind of row (jobs, agents,
messages, runs, dispatches) has its short writer here, beside the map they share.
"""

from __future__ import annotations

import sqlite3

import msgspec

from shepherd.store.ops import InsertMessages, NewDispatch, SaveAgent, SaveJob
from shepherd.store.ops.imports import ImportBatch, Imported, ImportItem, ImportJob
from shepherd.store.shared.imports import (
    Mapped,
    decode_map,
    item_status,
    job_spec,
    keeps_stored_fire,
    resolve_jobs,
)
from shepherd.store.sqlite import approvals
from shepherd.store.sqlite.agents import apply_agent_op
from shepherd.store.sqlite.dispatches import INSERT_DISPATCH, dispatch_values, next_id
from shepherd.store.sqlite.jobs import save_job
from shepherd.store.sqlite.messages import insert_messages

__all__ = ["import_batch"]


def import_batch(conn: sqlite3.Connection, op: ImportBatch) -> Imported:
    mapped = _mapped(conn, op.source)
    items: list[ImportItem] = []
    names, statuses = _resolve_jobs(conn, op, mapped)
    job_ids: dict[str, int] = {}
    for job in op.jobs:
        status = statuses[job.source_id]
        name = names[job.source_id]
        if status == "unchanged" or op.dry_run:
            stored = _job_row(conn, name)
            job_ids[job.source_id] = stored[0] if stored else 0
            nxt = stored[1] if stored and status == "unchanged" else job.next_run_at
            items.append(
                ImportItem(
                    kind="job", source_id=job.source_id, status=status, target=name, next_run_at=nxt
                )
            )
            continue
        job_id, nxt = _write_job(conn, op, job, name, names)
        job_ids[job.source_id] = job_id
        _remember(conn, op, "job", job.source_id, str(job_id), job.digest)
        items.append(
            ImportItem(
                kind="job", source_id=job.source_id, status=status, target=name, next_run_at=nxt
            )
        )
    for agent in op.agents:
        status = item_status(mapped, "agent", agent.source_id, agent.digest)
        if status != "unchanged" and not op.dry_run:
            apply_agent_op(
                conn, SaveAgent(spec=agent.spec, source="api", mode="register", now=op.now)
            )
            _remember(conn, op, "agent", agent.source_id, agent.spec.id, agent.digest)
        items.append(
            ImportItem(kind="agent", source_id=agent.source_id, status=status, target=agent.spec.id)
        )
    message_ids = {sid: target for (kind, sid), (target, _) in mapped.items() if kind == "message"}
    for m in op.messages:
        if ("message", m.source_id) in mapped:
            items.append(
                ImportItem(
                    kind="message",
                    source_id=m.source_id,
                    status="unchanged",
                    target=message_ids[m.source_id],
                )
            )
            continue
        target = ""
        if not op.dry_run:
            reply = message_ids.get(m.reply_source or "")
            row = msgspec.structs.replace(m.message, reply_to=int(reply) if reply else None)
            at = m.created_at if m.created_at is not None else op.now  # inbox order
            [new_id] = insert_messages(conn, InsertMessages([row], at))
            target = message_ids[m.source_id] = str(new_id)
            _remember(conn, op, "message", m.source_id, target, m.digest)
        items.append(
            ImportItem(kind="message", source_id=m.source_id, status="created", target=target)
        )
    if op.runs:
        items.extend(_runs(conn, op, mapped, job_ids))
    gated = 0
    if op.dispatches:
        dispatch_items, gated = _dispatches(conn, op, mapped, job_ids)
        items.extend(dispatch_items)
    return Imported(items=items, gated=gated)


# -- jobs ------------------------------------------------------------------------------


def _resolve_jobs(
    conn: sqlite3.Connection, op: ImportBatch, mapped: Mapped
) -> tuple[dict[str, str], dict[str, str]]:
    """Each job's final name and status (``shared.imports.resolve_jobs``)."""
    taken = {str(r[0]): int(r[1]) for r in conn.execute("SELECT name, id FROM jobs")}
    return resolve_jobs(op, mapped, taken)


def _write_job(
    conn: sqlite3.Connection, op: ImportBatch, job: ImportJob, name: str, names: dict[str, str]
) -> tuple[int, float | None]:
    spec = job_spec(job, name, names)
    raw = msgspec.json.encode(spec)
    nxt, skipped = job.next_run_at, job.skipped
    stored = conn.execute("SELECT spec, next_run_at FROM jobs WHERE name = ?", (name,)).fetchone()
    if stored is not None and keeps_stored_fire(stored[0], stored[1], spec, nxt):
        nxt, skipped = float(stored[1]), []  # shepherd is there or ahead: keep it
    save = SaveJob(
        name=name, executor=job.executor, enabled=job.enabled, spec=raw, next_run_at=nxt, now=op.now
    )
    job_id = save_job(conn, save)
    conn.execute(
        "UPDATE jobs SET last_run_at = ?, last_status = ?, consecutive_errors = ? WHERE id = ?",
        (job.last_run_at, job.last_status, job.consecutive_errors, job_id),
    )
    if skipped:
        first = next_id(conn, "runs")
        conn.executemany(
            "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
            " finished_at, reason, error, details) VALUES (?, NULL, ?, ?, 0, 'skipped', ?, ?,"
            " ?, ?, ?)",
            [
                (
                    first + i,
                    job_id,
                    name,
                    op.now,
                    op.now,
                    s.reason,
                    s.error,
                    None if s.slot is None else msgspec.json.encode({"slot": s.slot}),
                )
                for i, s in enumerate(skipped)
            ],
        )
    return job_id, nxt


def _job_row(conn: sqlite3.Connection, name: str) -> tuple[int, float | None] | None:
    row = conn.execute("SELECT id, next_run_at FROM jobs WHERE name = ?", (name,)).fetchone()
    return (int(row[0]), row[1]) if row is not None else None


# -- dispatches ------------------------------------------------------------------------


def _dispatches(
    conn: sqlite3.Connection, op: ImportBatch, mapped: Mapped, job_ids: dict[str, int]
) -> tuple[list[ImportItem], int]:
    items: list[ImportItem] = []
    new: list[tuple[int, int, str]] = []
    dispatch_id = next_id(conn, "dispatches")
    seq = next_id(conn, "dispatches", "seq")
    for d in op.dispatches:
        known = mapped.get(("dispatch", d.source_id))
        if known is not None:
            items.append(
                ImportItem(
                    kind="dispatch", source_id=d.source_id, status="unchanged", target=known[0]
                )
            )
            continue
        if op.dry_run:
            items.append(
                ImportItem(kind="dispatch", source_id=d.source_id, status="created", target="")
            )
            continue
        job_id = job_ids[d.job_source]
        job_name = conn.execute("SELECT name FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        row = NewDispatch(
            job_id=job_id,
            job_name=job_name,
            kind=d.kind,
            priority=d.priority,
            not_before=d.not_before,
            max_attempts=d.max_attempts,
            attempt=d.attempt,
        )
        conn.execute(INSERT_DISPATCH, dispatch_values(row, dispatch_id, seq, op.origin, op.now))
        if d.gate:
            new.append((dispatch_id, job_id, d.kind))
        _remember(conn, op, "dispatch", d.source_id, str(dispatch_id), d.digest)
        items.append(
            ImportItem(
                kind="dispatch", source_id=d.source_id, status="created", target=str(dispatch_id)
            )
        )
        dispatch_id, seq = dispatch_id + 1, seq + 1
    held = approvals.gate(conn, new, op.now) if new and approvals.any_gated(conn) else set()
    return items, len(held)


def _runs(
    conn: sqlite3.Connection, op: ImportBatch, mapped: Mapped, job_ids: dict[str, int]
) -> list[ImportItem]:
    items: list[ImportItem] = []
    run_id = next_id(conn, "runs")
    for r in op.runs:
        known = mapped.get(("run", r.source_id))
        if known is not None or op.dry_run or not job_ids.get(r.job_source):
            status = "unchanged" if known is not None else "created"
            target = known[0] if known is not None else ""
            items.append(
                ImportItem(kind="run", source_id=r.source_id, status=status, target=target)
            )
            continue
        job_id = job_ids[r.job_source]
        name = conn.execute("SELECT name FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        conn.execute(
            "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at,"
            " finished_at, error, result, reason, exit_code, timed_out, stdout, stderr, details)"
            " VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, 'imported', ?, ?, ?, ?, ?)",
            (
                run_id,
                job_id,
                name,
                r.attempt,
                r.status,
                r.started_at,
                r.finished_at,
                r.error,
                r.result,
                r.exit_code,
                int(r.timed_out),
                r.stdout,
                r.stderr,
                r.details,
            ),
        )
        _remember(conn, op, "run", r.source_id, str(run_id), "")
        items.append(
            ImportItem(kind="run", source_id=r.source_id, status="created", target=str(run_id))
        )
        run_id += 1
    return items


# -- the map -----------------------------------------------------------------------------


def _mapped(conn: sqlite3.Connection, source: str) -> Mapped:
    return decode_map(
        conn.execute(
            "SELECT kind, source_id, target_id, digest FROM import_map WHERE source = ?",
            (source,),
        )
    )


def _remember(
    conn: sqlite3.Connection, op: ImportBatch, kind: str, source_id: str, target: str, digest: str
) -> None:
    conn.execute(
        "INSERT INTO import_map (source, kind, source_id, target_id, digest, imported_at)"
        " VALUES (?,?,?,?,?,?) ON CONFLICT (source, kind, source_id) DO UPDATE SET"
        " target_id = excluded.target_id, digest = excluded.digest,"
        " imported_at = excluded.imported_at",
        (op.source, kind, source_id, target, digest, op.now),
    )
