"""The import plan: every OCS row mapped and validated as shepherd would validate it,
then ONE write op (``store.ops.ImportBatch``) for all of it.

``plan_import`` decides, without touching a database: each job's spec (``mapping``),
its validation (``validate_job`` with the executors the daemon would have), where its
schedule continues (``schedule``), and the agents, aliases, messages and queued
dispatches (``extras``). A job that cannot be imported rejects its children too; with
``partial`` the rest is imported, else nothing (``ImportPlan.blocked``).
``batch_op`` turns the plan into the op; the store decides created / updated /
unchanged inside the transaction (a dry run asks the same op with ``dry_run``).
The module is longer than most because the checks that reject a job (its own, its
parent's, the chain graph) and the op they lead to are read best in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from shepherd.actors.executors.base import Executor
from shepherd.runtime._chains import check_graph, parents_first
from shepherd.runtime.jobs import validate_job
from shepherd.runtime.ocs_import import extras, mapping
from shepherd.runtime.ocs_import.reader import KNOWN_TABLES, OcsData
from shepherd.runtime.ocs_import.schedule import Continued, continue_schedule
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec, encode_json, priority_rank, to_builtins
from shepherd.store.ops.imports import (
    ImportAgent,
    ImportBatch,
    ImportDispatch,
    ImportJob,
    ImportMessage,
    ImportRun,
)

__all__ = ["HISTORY", "SOURCE", "ImportPlan", "JobEntry", "TableNote", "batch_op", "plan_import"]

SOURCE = "ocs"
#: tables whose rows are history: listed as not carried, but they need no attention
HISTORY = frozenset(
    {
        "runs",
        "idempotency_ledger",
        "message_receipts",
        "approvals",
        "messages",
        "job_dispatch_queue",
    }
)
_PENDING_KINDS = ("pending", "claimed", "awaiting_approval")


class JobEntry(msgspec.Struct, frozen=True, kw_only=True):
    plan: mapping.JobPlan
    spec: JobSpec | None  # validated, schedule applied; None: rejected
    error: str | None
    continued: Continued | None
    digest: str
    row: dict[str, Any]


class TableNote(msgspec.Struct, frozen=True, kw_only=True):
    table: str
    rows: int
    reason: str
    history: bool = False


class ImportPlan(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    version: int
    jobs: list[JobEntry]
    agents: list[extras.AgentPlan]
    aliases: list[extras.AliasPlan]
    messages: list[extras.MessagePlan]
    dispatches: list[extras.DispatchPlan]
    tables: list[TableNote]
    history: list[ImportRun] = msgspec.field(default_factory=list)

    @property
    def rejected(self) -> list[JobEntry]:
        return [j for j in self.jobs if j.spec is None]

    @property
    def attention(self) -> bool:
        """Something is not carried over, rejected or missing from the config."""
        return (
            bool(self.rejected)
            or any(j.plan.not_carried for j in self.jobs)
            or any(a.error or a.not_carried for a in self.agents)
            or any(a.status != "in config" for a in self.aliases)
            or any(m.error or m.not_carried for m in self.messages)
            or any(d.kind is None for d in self.dispatches)
            or any(not t.history for t in self.tables)
        )


def plan_import(
    data: OcsData,
    executors: Mapping[str, Executor],
    aliases: Mapping[str, tuple[str, str]],
    now: float,
    *,
    history: int = 0,
) -> ImportPlan:
    names = _wanted_names(data.jobs)
    running = {str(r.get("job_id")) for r in data.runs.values() if r.get("status") == "running"}
    entries: dict[str, JobEntry] = {}
    for row in data.jobs:
        plan = mapping.map_job(row, names)
        spec, error, cont = plan.spec, plan.error, None
        if spec is not None:
            try:
                validate_job(spec, executors, now, previous=spec)
            except ConfigError as exc:
                spec, error = None, str(exc)
        if spec is not None:
            cont = continue_schedule(spec, row, now, running=plan.source_id in running)
            if cont.disable:
                spec = msgspec.structs.replace(spec, enabled=False)
        entries[plan.source_id] = JobEntry(
            plan=plan, spec=spec, error=error, continued=cont, digest=extras.digest(row), row=row
        )
    _reject_orphans(entries)
    _check_chains(entries)
    jobs = list(entries.values())
    approved = {
        str(a.get("dispatch_queue_id")) for a in data.approvals if a.get("status") == "approved"
    }
    dispatches = [
        extras.map_dispatch(r, data.runs, approved, now)
        for r in data.queue
        if r.get("status") in _PENDING_KINDS
    ]
    dispatches = [_check_dispatch(d, entries) for d in dispatches]
    return ImportPlan(
        source=data.path,
        version=data.version,
        jobs=jobs,
        agents=[extras.map_agent(r) for r in data.agents],
        aliases=[extras.map_alias(r, dict(aliases)) for r in data.aliases],
        messages=[extras.map_message(r) for r in data.messages],
        dispatches=dispatches,
        history=(runs := _history(data, entries, history)),
        tables=_table_notes(data, len(runs)),
    )


def _history(data: OcsData, entries: dict[str, JobEntry], keep: int) -> list[ImportRun]:
    """The newest ``keep`` finished runs of each imported job, oldest first."""
    per_job: dict[str, list[ImportRun]] = {}
    for row in data.runs.values():
        run = extras.map_run(row)
        job = entries.get(run.job_source) if run is not None else None
        if run is not None and job is not None and job.spec is not None:
            per_job.setdefault(run.job_source, []).append(run)
    out: list[ImportRun] = []
    for runs in per_job.values():
        runs.sort(key=lambda r: (r.finished_at or r.started_at, r.source_id), reverse=True)
        out += reversed(runs[:keep])
    return out


def _wanted_names(rows: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    used: set[str] = set()
    for row in rows:
        sid = str(row["id"])
        name = mapping.slug(str(row.get("name") or ""), f"ocs-{sid[:8]}")
        if name in used:
            name = f"{name[:191]}-{sid[:8]}"
        used.add(name)
        names[sid] = name
    return names


def _reject(entry: JobEntry, why: str) -> JobEntry:
    return msgspec.structs.replace(entry, spec=None, error=why, continued=None)


def _reject_orphans(entries: dict[str, JobEntry]) -> None:
    """A child whose parent does not exist or is not imported is not imported either."""
    changed = True
    while changed:
        changed = False
        for sid, e in entries.items():
            parent = e.plan.parent_source
            if e.spec is None or parent is None:
                continue
            if parent not in entries:
                entries[sid] = _reject(e, f"parent: job {parent} does not exist (an orphan)")
                changed = True
            elif entries[parent].spec is None:
                why = f"parent: {entries[parent].plan.name!r} is not imported"
                entries[sid] = _reject(e, why)
                changed = True


def _check_chains(entries: dict[str, JobEntry]) -> None:
    ok = {e.spec.name: sid for sid, e in entries.items() if e.spec is not None}
    specs = parents_first([e.spec for e in entries.values() if e.spec is not None])
    try:
        check_graph(specs, [], field=lambda s: s.name)
    except ConfigError as exc:
        sid = ok.get(exc.field or "")
        if sid is None:
            raise
        entries[sid] = _reject(entries[sid], str(exc).removeprefix(f"{exc.field}: "))
        _reject_orphans(entries)
        _check_chains(entries)


def _check_dispatch(d: extras.DispatchPlan, entries: dict[str, JobEntry]) -> extras.DispatchPlan:
    if d.kind is None:
        return d
    job = entries.get(d.job_source)
    if job is None or job.spec is None:
        return msgspec.structs.replace(d, kind=None, error="its job is not imported")
    if not job.spec.enabled and d.kind != "run_now":
        return msgspec.structs.replace(
            d, kind=None, error="its job is disabled: openclaw-scheduler cancels it when due"
        )
    return d


def _table_notes(data: OcsData, history: int) -> list[TableNote]:
    notes: list[TableNote] = []
    carried = {
        "messages": len(data.messages),
        "approvals": len(data.approvals),
        "job_dispatch_queue": len(data.queue),
        "runs": history,
    }
    for table, rows in sorted(data.counts.items()):
        reason = KNOWN_TABLES.get(table)
        if table in carried:
            left = rows - carried[table]
            if left > 0:
                why = (
                    KNOWN_TABLES[table]
                    if table == "runs"
                    else ("not carried: rows no longer pending (history)")
                )
                notes.append(TableNote(table=table, rows=left, reason=why, history=True))
        elif reason is None:
            why = "unknown table: this importer does not know it"
            notes.append(TableNote(table=table, rows=rows, reason=why))
        elif reason.startswith("not carried") and rows > 0:
            notes.append(TableNote(table=table, rows=rows, reason=reason, history=table in HISTORY))
    for table, known in _TABLE_COLUMNS.items():
        extra = sorted(set(data.columns.get(table, [])) - known)
        if table == "jobs":
            extra = [c for c in extra if not c.startswith(mapping.V02)]
        if extra:
            notes.append(
                TableNote(table=table, rows=0, reason=f"unknown columns {extra}: not carried")
            )
    return notes


_TABLE_COLUMNS: dict[str, frozenset[str]] = {
    "jobs": mapping.MAPPED_COLUMNS,
    "job_dispatch_queue": frozenset(
        [
            "id",
            "job_id",
            "dispatch_kind",
            "status",
            "scheduled_for",
            "source_run_id",
            "retry_of_run_id",
            "created_at",
            "claimed_at",
            "processed_at",
        ]
    ),
    "delivery_aliases": frozenset(["alias", "channel", "target", "description", "created_at"]),
}


def batch_op(plan: ImportPlan, now: float, origin: str, *, dry_run: bool) -> ImportBatch:
    """The one write op of ``plan`` (its accepted items; parents before children)."""
    accepted = {e.plan.source_id: e for e in plan.jobs if e.spec is not None}
    order = parents_first([e.spec for e in accepted.values() if e.spec is not None])
    by_name = {e.spec.name: e for e in accepted.values() if e.spec is not None}
    jobs: list[ImportJob] = []
    dispatches: list[ImportDispatch] = []
    for spec in order:
        e = by_name[spec.name]
        cont = e.continued or Continued(next_run_at=None)
        row = e.row
        jobs.append(
            ImportJob(
                source_id=e.plan.source_id,
                digest=e.digest,
                name=spec.name,
                executor=spec.executor,
                enabled=spec.enabled,
                spec=encode_json(spec),
                next_run_at=cont.next_run_at,
                parent_source=e.plan.parent_source,
                skipped=cont.skipped,
                last_run_at=mapping.to_epoch(row.get("last_run_at")),
                last_status=row.get("last_status"),
                consecutive_errors=int(row.get("consecutive_errors") or 0),
            )
        )
        extra = [("replay", "replay")] if cont.replay else []
        if spec.enabled:
            extra += [(f"queued:{i}", "enqueue") for i in range(int(row.get("queued_count") or 0))]
        for suffix, kind in extra:
            dispatches.append(_dispatch(f"{e.plan.source_id}:{suffix}", e, kind, now))
    for d in plan.dispatches:
        if d.kind is None:
            continue
        e = accepted[d.job_source]
        assert e.spec is not None
        dispatches.append(
            ImportDispatch(
                source_id=d.source_id,
                digest=d.status,
                job_source=d.job_source,
                kind=d.kind,
                priority=priority_rank(e.spec.priority),
                not_before=d.not_before,
                max_attempts=max(e.spec.retry.max_attempts, d.attempt + 1),
                attempt=d.attempt,
                gate=d.gate,
            )
        )
    return ImportBatch(
        source=SOURCE,
        now=now,
        origin=origin,
        dry_run=dry_run,
        jobs=jobs,
        dispatches=dispatches,
        runs=list(plan.history),
        messages=[
            ImportMessage(
                source_id=m.source_id,
                digest="",
                message=m.message,
                reply_source=m.reply_source,
                created_at=m.created_at,
            )
            for m in plan.messages
            if m.message is not None
        ],
        agents=[
            ImportAgent(
                source_id=a.source_id, digest=extras.digest(to_builtins(a.spec)), spec=a.spec
            )
            for a in plan.agents
            if a.spec is not None
        ],
    )


def _dispatch(source_id: str, e: JobEntry, kind: str, now: float) -> ImportDispatch:
    assert e.spec is not None
    return ImportDispatch(
        source_id=source_id,
        digest="",
        job_source=e.plan.source_id,
        kind=kind,
        priority=priority_rank(e.spec.priority),
        not_before=now,
        max_attempts=e.spec.retry.max_attempts,
        gate=kind != "replay",
    )
