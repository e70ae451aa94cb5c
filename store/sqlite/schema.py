"""Schema and migrations. Applied in order on open; ``schema_version`` records the level.

Timestamps are epoch seconds (REAL, UTC). Priorities are stored as their rank
(0 critical … 4 background) so the ready index sorts without a CASE.
A migration is a list of statements; never edit a released one, append a new one
(the module is long because every released migration stays here, as shipped; the
first two, the base tables, are in ``schema_base``).
"""

from __future__ import annotations

from shepherd.store.sqlite.schema_base import V1_CORE, V2_MESSAGES

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION"]

# Written into the file header so a foreign SQLite database is recognised as such.
APPLICATION_ID = 0x53485044  # "SHPD"

MIGRATIONS: list[list[str]] = [
    V1_CORE,  # 1: jobs, dispatches, runs (schema_base)
    V2_MESSAGES,  # 2: messages and deliveries (schema_base)
    # 3: indexes for the pruner's batched deletes (store/sqlite/prune.py); messages_reply serves
    # the reply_to foreign key's ON DELETE SET NULL, which otherwise scans the table
    [
        "CREATE INDEX runs_finished ON runs(finished_at) WHERE finished_at IS NOT NULL",
        """CREATE INDEX dispatches_ended ON dispatches(status, updated_at)
            WHERE status IN ('done', 'cancelled', 'dead')""",
        "CREATE INDEX messages_ended ON messages(status, created_at)",
        "CREATE INDEX messages_reply ON messages(reply_to)",
        "CREATE INDEX deliveries_ended ON deliveries(status, updated_at)",
    ],
    # 4: the process group a run started (actors/executors/procs.py): its id, the
    # leader's start time and what that time counts in, so crash recovery finds it again
    # and never kills a reused pid; ``process`` is what recovery found (gone / killed)
    [
        "ALTER TABLE runs ADD COLUMN pgid INTEGER",
        "ALTER TABLE runs ADD COLUMN proc_start INTEGER",
        "ALTER TABLE runs ADD COLUMN proc_clock TEXT",
        "ALTER TABLE runs ADD COLUMN process TEXT",
    ],
    # 5: a producer's idempotency key bound to its dispatch for the row's lifetime
    # (store/sqlite/dispatches.py). ``producer_key`` is the key as given; ``idempotency_key``
    # stays the run key (``<key>:replay<n>`` after a crash replay). Existing rows: the
    # key of a row without a slot, cut at ``:replay`` (a replayed keyless dispatch so gets
    # its own lineage hash, which no producer holds). Older versions let a key be reused
    # once its dispatch was dead or cancelled, so a file may hold several dispatches of
    # one (job, key): the newest keeps the key (the one an enqueue returned last), the
    # older ones keep their run key only, and the unique index can be built.
    [
        "ALTER TABLE dispatches ADD COLUMN producer_key TEXT",
        """UPDATE dispatches SET producer_key = CASE
                WHEN instr(idempotency_key, ':replay') > 0
                THEN substr(idempotency_key, 1, instr(idempotency_key, ':replay') - 1)
                ELSE idempotency_key END
            WHERE slot IS NULL AND idempotency_key IS NOT NULL""",
        """UPDATE dispatches SET producer_key = NULL
            WHERE producer_key IS NOT NULL AND id NOT IN (SELECT MAX(id) FROM dispatches
                WHERE producer_key IS NOT NULL GROUP BY job_id, producer_key)""",
        """CREATE UNIQUE INDEX dispatches_producer ON dispatches(job_id, producer_key)
            WHERE producer_key IS NOT NULL""",
    ],
    # 6: job ids are never reused. ``jobs.id`` was a plain INTEGER PRIMARY KEY, so after
    # the highest-numbered job was removed the next job got its id back, and with it
    # the old job's dispatches, runs and producer keys (unique per job id). The table is
    # rebuilt with AUTOINCREMENT and its sequence starts past every job id any table
    # still names.
    [
        """CREATE TABLE jobs_v6 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            executor TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1,
            spec BLOB NOT NULL,
            next_run_at REAL,
            anchor REAL,
            last_run_at REAL,
            last_status TEXT,
            consecutive_errors INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """INSERT INTO jobs_v6 (id, name, executor, enabled, spec, next_run_at, anchor,
                last_run_at, last_status, consecutive_errors, created_at, updated_at)
            SELECT id, name, executor, enabled, spec, next_run_at, anchor, last_run_at,
                last_status, consecutive_errors, created_at, updated_at FROM jobs""",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_v6 RENAME TO jobs",
        "CREATE INDEX jobs_due ON jobs(next_run_at) WHERE enabled = 1 AND next_run_at IS NOT NULL",
        "DELETE FROM sqlite_sequence WHERE name = 'jobs'",
        """INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs', COALESCE(MAX(id), 0) FROM (
                SELECT MAX(id) AS id FROM jobs
                UNION ALL SELECT MAX(job_id) FROM dispatches
                UNION ALL SELECT MAX(job_id) FROM runs
                UNION ALL SELECT MAX(job_id) FROM idempotency
                UNION ALL SELECT MAX(job_id) FROM messages
                UNION ALL SELECT MAX(job_id) FROM deliveries)""",
    ],
    # 7: chains and approvals (store/sqlite/chains.py, store/sqlite/approvals.py)
    [
        # approvals (store/sqlite/approvals.py): one row per gated dispatch; the
        # partial indexes serve the timer (pending by deadline) and the backlog count
        # (pending by job). ``jobs.approval`` is the job's gate as the insert path needs
        # it (NULL: not gated), so a batch of ungated work costs one indexed probe.
        """CREATE TABLE approvals (
            id INTEGER PRIMARY KEY,
            dispatch_id INTEGER NOT NULL,
            job_id INTEGER NOT NULL,
            job_name TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            on_timeout TEXT NOT NULL,
            requested_at REAL NOT NULL,
            deadline REAL NOT NULL,
            resolved_at REAL,
            resolved_by TEXT,
            reason TEXT,
            delivery_id INTEGER
        )""",
        "CREATE INDEX approvals_deadline ON approvals(deadline) WHERE status = 'pending'",
        "CREATE INDEX approvals_pending_job ON approvals(job_id) WHERE status = 'pending'",
        "CREATE INDEX approvals_dispatch ON approvals(dispatch_id)",
        "CREATE INDEX approvals_resolved ON approvals(resolved_at) WHERE status != 'pending'",
        "ALTER TABLE jobs ADD COLUMN approval BLOB",
        "CREATE INDEX jobs_gated ON jobs(id) WHERE approval IS NOT NULL",
        # chains (store/sqlite/chains.py): a job's parent (by name, from its spec) for
        # the children lookup that finalizing a run does, and chain dispatches by the
        # run that fired them (``cancel --cascade``)
        "ALTER TABLE jobs ADD COLUMN parent TEXT",
        """UPDATE jobs SET parent = json_extract(CAST(spec AS TEXT), '$.parent')
            WHERE json_valid(CAST(spec AS TEXT))""",
        "CREATE INDEX jobs_parent ON jobs(parent) WHERE parent IS NOT NULL",
        """CREATE INDEX dispatches_parent_run ON dispatches(parent_run_id)
            WHERE parent_run_id IS NOT NULL""",
        # @@migration-7-chains-approvals@@
    ],
    # 8: task groups (store/sqlite/groups.py)
    [
        """CREATE TABLE task_groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',
            timeout REAL NOT NULL,
            heartbeat_window REAL NOT NULL,
            created_by TEXT,
            delivery_to TEXT,
            delivery_channel TEXT,
            channel TEXT,
            target TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            completed_at REAL,
            summary TEXT,
            delivery_id INTEGER UNIQUE
        )""",
        # one open group per name; a name is free again once its group ended
        "CREATE UNIQUE INDEX task_groups_open ON task_groups(name) WHERE status = 'open'",
        "CREATE INDEX task_groups_name ON task_groups(name, id)",
        """CREATE TABLE task_group_members (
            group_id INTEGER NOT NULL REFERENCES task_groups(id) ON DELETE CASCADE,
            pos INTEGER NOT NULL,
            label TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            started_at REAL,
            finished_at REAL,
            last_heartbeat REAL,
            message TEXT,
            error TEXT,
            PRIMARY KEY (group_id, label)
        )""",
        # failed spawn messages, for `status`
        "CREATE INDEX messages_spawn ON messages(kind, status) WHERE kind = 'spawn'",
        # the pruner's ended groups by when they ended (store/sqlite/prune.py)
        """CREATE INDEX task_groups_ended ON task_groups(completed_at)
            WHERE status != 'open'""",
        # @@migration-8-groups@@
    ],
    # 9: agents registry and assignment (store/sqlite/agents.py)
    [
        # ``rev`` grows with every write of a row (a removal leaves a tombstone), so the
        # dispatcher reads only what changed since the newest rev it saw
        """CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            capabilities TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'ready',
            policy TEXT NOT NULL DEFAULT 'always-on',
            max_concurrent INTEGER NOT NULL DEFAULT 3,
            last_seen REAL,
            delivery TEXT,
            model TEXT,
            wake TEXT,
            wake_timeout REAL NOT NULL DEFAULT 30,
            source TEXT NOT NULL DEFAULT 'api',
            failures INTEGER NOT NULL DEFAULT 0,
            rev INTEGER NOT NULL,
            removed INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE UNIQUE INDEX agents_rev ON agents(rev)",
        # a dispatch's own required capabilities (comma-joined) and owner; the agent its
        # run was assigned to and why it waits (``unmatched: needs [gpu]``)
        "ALTER TABLE dispatches ADD COLUMN needs TEXT",
        "ALTER TABLE dispatches ADD COLUMN owner TEXT",
        "ALTER TABLE dispatches ADD COLUMN agent TEXT",
        "ALTER TABLE dispatches ADD COLUMN wait_reason TEXT",
        "ALTER TABLE runs ADD COLUMN agent TEXT",
        "CREATE INDEX runs_agent ON runs(agent) WHERE status = 'running' AND agent IS NOT NULL",
        # @@migration-9-agents@@
    ],
    # 10: rate limits and pauses (store/sqlite/controls.py)
    [
        """CREATE TABLE pauses (
            scope TEXT NOT NULL,
            name TEXT NOT NULL,
            paused_at REAL NOT NULL,
            paused_by TEXT NOT NULL DEFAULT '',
            reason TEXT,
            PRIMARY KEY (scope, name)
        )""",
        # @@migration-10-controls@@
    ],
    # 11: imports from another scheduler (store/sqlite/imports.py): each imported row's
    # source id → the shepherd id it became and the digest of the source row, so that
    # importing the same source again creates nothing twice
    [
        """CREATE TABLE import_map (
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            source_id TEXT NOT NULL,
            target_id TEXT NOT NULL,
            digest TEXT,
            imported_at REAL NOT NULL,
            PRIMARY KEY (source, kind, source_id)
        )""",
        # @@migration-11-imports@@
    ],
    # 12: the dispatcher's window of the queue's head (store/sqlite/window.py): queued
    # rows in the ready heap's order, so a refill reads a page, never the backlog
    [
        """CREATE INDEX dispatches_ready ON dispatches(priority, not_before, seq)
            WHERE status = 'queued'""",
    ],
    # 13: each job's slot dispatches (schedule and spawn), by job and id: which fired
    # one-shot jobs have ended (queries.schedule_states) is read by job, not by a scan of
    # every dispatch
    [
        "CREATE INDEX dispatches_job_slot ON dispatches(job_id, id) WHERE slot IS NOT NULL",
    ],
    # 14: the highest dispatch id, seq and run id a deleted row held (a purge of dead
    # letters may take the newest rows; ids are MAX + 1): ``dispatches.next_id`` starts
    # past them, so no number is handed out twice. PostgreSQL's sequences never go back.
    [
        """CREATE TABLE id_floors (
            name TEXT PRIMARY KEY,
            last INTEGER NOT NULL
        )""",
    ],
    # 15: when a dispatch's current agent got it: assignment chose it, or its worker
    # claimed the run's lease (the task API's ``assigned_at``)
    ["ALTER TABLE dispatches ADD COLUMN assigned_at REAL"],
]

SCHEMA_VERSION = len(MIGRATIONS)
