"""PostgreSQL SQL of ``ImportBatch`` (store/ops/imports.py; mirrors
``store.sqlite.imports``, the rules are ``store.shared.imports``): one import in one
transaction, its items keyed in ``import_map`` (source, kind, source id) → the
shepherd id and the digest of the source row as last imported.

The jobs, agents and messages are written with the SQL the other ops use
(``save_job``, the agents' ``SaveAgent``, ``insert_messages``); the dispatches with the
shared insert (``dispatches.insert_rows``, ids from ``take_ids``) and then
``approvals.gate`` (a gated job holds them as any insert does). Two nodes importing
the same source at once take turns: the transaction holds an advisory lock on the
source (``pg_advisory_xact_lock``), so the second sees the first's map and creates
nothing twice. The module is a little longer than most because each kind of row has
its short writer here, beside the map they share.
"""

from __future__ import annotations

import asyncpg
import msgspec

from shepherd.store.ops import InsertMessages, NewDispatch, SaveAgent, SaveJob
from shepherd.store.ops.imports import ImportBatch, Imported, ImportItem, ImportJob
from shepherd.store.postgres import approvals
from shepherd.store.postgres.agents import apply_agent_op
from shepherd.store.postgres.dispatches import insert_rows, take_ids
from shepherd.store.postgres.jobs import save_job
from shepherd.store.postgres.messages import insert_messages
from shepherd.store.shared.imports import (
    Mapped,
    decode_map,
    item_status,
    job_spec,
    keeps_stored_fire,
    resolve_jobs,
)

__all__ = ["import_batch"]


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


async def import_batch(conn: asyncpg.Connection, op: ImportBatch) -> Imported:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended("
        "'shepherd:' || current_schema() || ':import:' || $1, 0))",
        op.source,
    )
    mapped = await _mapped(conn, op.source)
    items: list[ImportItem] = []
    taken = {str(r[0]): int(r[1]) for r in await conn.fetch("SELECT name, id FROM jobs")}
    names, statuses = resolve_jobs(op, mapped, taken)
    job_ids: dict[str, int] = {}
    for job in op.jobs:
        status = statuses[job.source_id]
        name = names[job.source_id]
        if status == "unchanged" or op.dry_run:
            stored = await _job_row(conn, name)
            job_ids[job.source_id] = stored[0] if stored else 0
            nxt = stored[1] if stored and status == "unchanged" else job.next_run_at
        else:
            job_id, nxt = await _write_job(conn, op, job, name, names)
            job_ids[job.source_id] = job_id
            await _remember(conn, op, "job", job.source_id, str(job_id), job.digest)
        items.append(
            ImportItem(
                kind="job", source_id=job.source_id, status=status, target=name, next_run_at=nxt
            )
        )
    for agent in op.agents:
        status = item_status(mapped, "agent", agent.source_id, agent.digest)
        if status != "unchanged" and not op.dry_run:
            await apply_agent_op(
                conn, SaveAgent(spec=agent.spec, source="api", mode="register", now=op.now)
            )
            await _remember(conn, op, "agent", agent.source_id, agent.spec.id, agent.digest)
        items.append(
            ImportItem(kind="agent", source_id=agent.source_id, status=status, target=agent.spec.id)
        )
    items.extend(await _messages(conn, op, mapped))
    if op.runs:
        items.extend(await _runs(conn, op, mapped, job_ids))
    gated = 0
    if op.dispatches:
        dispatch_items, gated = await _dispatches(conn, op, mapped, job_ids)
        items.extend(dispatch_items)
    return Imported(items=items, gated=gated)


# -- jobs ------------------------------------------------------------------------------


async def _write_job(
    conn: asyncpg.Connection, op: ImportBatch, job: ImportJob, name: str, names: dict[str, str]
) -> tuple[int, float | None]:
    spec = job_spec(job, name, names)
    raw = msgspec.json.encode(spec)
    nxt, skipped = job.next_run_at, job.skipped
    stored = await conn.fetchrow("SELECT spec, next_run_at FROM jobs WHERE name = $1", name)
    if stored is not None and keeps_stored_fire(stored[0], stored[1], spec, nxt):
        nxt, skipped = float(stored[1]), []  # shepherd is there or ahead: keep it
    save = SaveJob(
        name=name, executor=job.executor, enabled=job.enabled, spec=raw, next_run_at=nxt, now=op.now
    )
    job_id = await save_job(conn, save)
    await conn.execute(
        "UPDATE jobs SET last_run_at = $1, last_status = $2, consecutive_errors = $3 WHERE id = $4",
        _float(job.last_run_at),
        job.last_status,
        int(job.consecutive_errors),
        job_id,
    )
    if skipped:
        now = float(op.now)
        await conn.executemany(
            "INSERT INTO runs (dispatch_id, job_id, job_name, attempt, status, started_at,"
            " finished_at, reason, error, details) VALUES (NULL, $1, $2, 0, 'skipped', $3, $3,"
            " $4, $5, $6)",
            [
                (
                    job_id,
                    name,
                    now,
                    s.reason,
                    s.error,
                    None if s.slot is None else msgspec.json.encode({"slot": s.slot}),
                )
                for s in skipped
            ],
        )
    return job_id, nxt


async def _job_row(conn: asyncpg.Connection, name: str) -> tuple[int, float | None] | None:
    row = await conn.fetchrow("SELECT id, next_run_at FROM jobs WHERE name = $1", name)
    return (int(row[0]), row[1]) if row is not None else None


# -- messages, runs, dispatches --------------------------------------------------------


async def _messages(conn: asyncpg.Connection, op: ImportBatch, mapped: Mapped) -> list[ImportItem]:
    items: list[ImportItem] = []
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
            [new_id] = await insert_messages(conn, InsertMessages([row], at))
            target = message_ids[m.source_id] = str(new_id)
            await _remember(conn, op, "message", m.source_id, target, m.digest)
        items.append(
            ImportItem(kind="message", source_id=m.source_id, status="created", target=target)
        )
    return items


async def _dispatches(
    conn: asyncpg.Connection, op: ImportBatch, mapped: Mapped, job_ids: dict[str, int]
) -> tuple[list[ImportItem], int]:
    items: list[ImportItem] = []
    fresh = [d for d in op.dispatches if ("dispatch", d.source_id) not in mapped]
    ids = iter(await take_ids(conn, 0 if op.dry_run else len(fresh)))
    job_names = {
        int(r[0]): str(r[1])
        for r in await conn.fetch(
            "SELECT id, name FROM jobs WHERE id = ANY($1::bigint[])", list(set(job_ids.values()))
        )
    }
    rows: list[NewDispatch] = []
    taken: list[tuple[int, int]] = []
    new: list[tuple[int, int, str]] = []
    for d in op.dispatches:
        known = mapped.get(("dispatch", d.source_id))
        if known is not None or op.dry_run:
            status, target = ("unchanged", known[0]) if known is not None else ("created", "")
            items.append(
                ImportItem(kind="dispatch", source_id=d.source_id, status=status, target=target)
            )
            continue
        job_id = job_ids[d.job_source]
        dispatch_id, seq = next(ids)
        rows.append(
            NewDispatch(
                job_id=job_id,
                job_name=job_names[job_id],
                kind=d.kind,
                priority=d.priority,
                not_before=float(d.not_before),
                max_attempts=d.max_attempts,
                attempt=d.attempt,
            )
        )
        taken.append((dispatch_id, seq))
        if d.gate:
            new.append((dispatch_id, job_id, d.kind))
        await _remember(conn, op, "dispatch", d.source_id, str(dispatch_id), d.digest)
        items.append(
            ImportItem(
                kind="dispatch", source_id=d.source_id, status="created", target=str(dispatch_id)
            )
        )
    await insert_rows(conn, rows, taken, op.origin, op.now, keyed=False)
    if not new or not await approvals.any_gated(conn):
        return items, 0
    return items, len(await approvals.gate(conn, new, op.now))


async def _runs(
    conn: asyncpg.Connection, op: ImportBatch, mapped: Mapped, job_ids: dict[str, int]
) -> list[ImportItem]:
    items: list[ImportItem] = []
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
        run_id = int(
            await conn.fetchval(
                "INSERT INTO runs (dispatch_id, job_id, job_name, attempt, status, started_at,"
                " finished_at, error, result, reason, exit_code, timed_out, stdout, stderr,"
                " details) SELECT NULL, id, name, $2, $3, $4, $5, $6, $7, 'imported', $8, $9,"
                " $10, $11, $12 FROM jobs WHERE id = $1 RETURNING id",
                job_id,
                int(r.attempt),
                r.status,
                float(r.started_at),
                _float(r.finished_at),
                r.error,
                r.result,
                r.exit_code,
                int(r.timed_out),
                r.stdout,
                r.stderr,
                r.details,
            )
        )
        await _remember(conn, op, "run", r.source_id, str(run_id), "")
        items.append(
            ImportItem(kind="run", source_id=r.source_id, status="created", target=str(run_id))
        )
    return items


# -- the map -----------------------------------------------------------------------------


async def _mapped(conn: asyncpg.Connection, source: str) -> Mapped:
    return decode_map(
        await conn.fetch(
            "SELECT kind, source_id, target_id, digest FROM import_map WHERE source = $1",
            source,
        )
    )


async def _remember(
    conn: asyncpg.Connection, op: ImportBatch, kind: str, source_id: str, target: str, digest: str
) -> None:
    await conn.execute(
        "INSERT INTO import_map (source, kind, source_id, target_id, digest, imported_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (source, kind, source_id) DO UPDATE SET"
        " target_id = excluded.target_id, digest = excluded.digest,"
        " imported_at = excluded.imported_at",
        op.source,
        kind,
        source_id,
        target,
        digest,
        float(op.now),
    )
