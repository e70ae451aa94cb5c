"""Reading an openclaw-scheduler (OCS) database: refuse what is not one, is of a schema
version this importer does not know, or is still held by a running OCS; then the rows
the import maps, and what it cannot (tables and columns it does not know).

The file is opened read-only (``file:...?mode=ro``, ``store.sqlite.ocs_source``) and
never written. A running OCS keeps its database open (WAL mode): the lock probe sees
the other process and the import is refused (a ConfigError, exit 2) before any read.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shepherd.store.errors import ConfigError
from shepherd.store.sqlite.ocs_source import SourceDb, holder_pid, read_source

__all__ = ["KNOWN_TABLES", "KNOWN_VERSIONS", "OcsData", "read_ocs"]

#: schema versions of OCS's schema.sql this importer maps (``schema_migrations``)
KNOWN_VERSIONS: tuple[int, ...] = (23,)

# the rows the import reads (table → WHERE); the other tables are only counted
_SELECT = {
    "jobs": "",
    "agents": "",
    "delivery_aliases": "",
    "job_dispatch_queue": "status IN ('pending', 'claimed', 'awaiting_approval')",
    "approvals": "status IN ('pending', 'approved')",
    "messages": "status = 'pending'",
    "runs": "status = 'running' OR id IN (SELECT retry_of_run_id FROM job_dispatch_queue"
    " WHERE status IN ('pending', 'claimed', 'awaiting_approval'))",
}

#: every table of schema version 23 and what becomes of its rows
KNOWN_TABLES: dict[str, str] = {
    "jobs": "jobs",
    "agents": "agents",
    "delivery_aliases": "[delivery] aliases in the config",
    "job_dispatch_queue": "queued dispatches (pending / claimed / awaiting approval)",
    "messages": "inbox messages (pending)",
    "approvals": "held dispatches (pending approvals are requested again)",
    "runs": "not carried: run history (the job keeps last run, status, error count;"
    " --history N keeps the newest N per job)",
    "idempotency_ledger": "not carried: shepherd keys slots by (job, slot) itself",
    "task_tracker": "not carried: task trackers (recreate open ones with `groups create`)",
    "task_tracker_agents": "not carried: task tracker members",
    "message_receipts": "not carried: delivery receipts (audit history)",
    "team_tasks": "not carried: team adapter (out of scope, D12)",
    "team_mailbox_events": "not carried: team adapter (out of scope, D12)",
    "schema_migrations": "the schema version",
}

_REQUIRED = {
    "jobs": {"id", "name", "schedule_cron", "session_target", "next_run_at"},
    "schema_migrations": {"version"},
}


class OcsData(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    version: int
    jobs: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    aliases: list[dict[str, Any]]
    queue: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    runs: dict[str, dict[str, Any]]  # by id: running, retried, and the history asked for
    counts: dict[str, int]  # rows per table
    columns: dict[str, list[str]]  # per table


_FINISHED = "('ok', 'error', 'timeout', 'crashed', 'cancelled', 'skipped')"


def read_ocs(path: str, *, history: int = 0) -> OcsData:
    """The OCS database at ``path``; a ConfigError naming the path when it is not one,
    is of an unknown schema version, or is held by a running process. ``history``: the
    newest finished runs of each job read too (``--history N``)."""
    pid = holder_pid(path)
    if pid is not None:
        raise ConfigError(
            f"the database is in use by process {pid} (a running openclaw-scheduler?);"
            " stop it first, then import",
            field=path,
        )
    probe = read_source(path, {"schema_migrations": ""})
    version = _version(probe)
    select = dict(_SELECT)
    if history > 0:
        select["runs"] += (
            " OR id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY job_id"
            " ORDER BY COALESCE(finished_at, started_at) DESC, id DESC) AS k FROM runs"
            f" WHERE status IN {_FINISHED}) WHERE k <= {int(history)})"
        )
    db = read_source(path, select)
    tables = db.tables

    def rows(name: str) -> list[dict[str, Any]]:
        table = tables.get(name)
        return list(table.rows) if table is not None else []

    return OcsData(
        path=path,
        version=version,
        jobs=rows("jobs"),
        agents=rows("agents"),
        aliases=rows("delivery_aliases"),
        queue=rows("job_dispatch_queue"),
        approvals=rows("approvals"),
        messages=rows("messages"),
        runs={str(r["id"]): r for r in rows("runs")},
        counts={name: t.count for name, t in tables.items()},
        columns={name: list(t.columns) for name, t in tables.items()},
    )


def _version(db: SourceDb) -> int:
    if db.shepherd:
        raise ConfigError("is a shepherd database, not an openclaw-scheduler one", field=db.path)
    for table, needed in _REQUIRED.items():
        found = db.tables.get(table)
        missing = sorted(needed - set(found.columns)) if found is not None else None
        if missing is None or missing:
            what = f"no {table} table" if missing is None else f"{table} lacks {missing}"
            raise ConfigError(f"not an openclaw-scheduler database ({what})", field=db.path)
    versions = [r["version"] for r in db.tables["schema_migrations"].rows]
    numbers = [v for v in versions if isinstance(v, int) and not isinstance(v, bool)]
    if not numbers:
        raise ConfigError(
            "not an openclaw-scheduler database (schema_migrations is empty)", field=db.path
        )
    version = max(numbers)
    if version not in KNOWN_VERSIONS:
        known = ", ".join(str(v) for v in KNOWN_VERSIONS)
        raise ConfigError(
            f"openclaw-scheduler schema version {version} is not one this importer knows"
            f" (it knows {known})",
            field=db.path,
        )
    return version
