"""The first two migrations of the SQLite schema (``store.sqlite.schema``): the core
tables and the messages and deliveries tables, as shipped (never edited; later changes
are migrations appended in ``schema``)."""

from __future__ import annotations

from shepherd.store.sqlite import ledger

__all__ = ["V1_CORE", "V2_MESSAGES"]

# 1: jobs, dispatches, runs
V1_CORE: list[str] = [
    """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
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
    "CREATE INDEX jobs_due ON jobs(next_run_at) WHERE enabled = 1 AND next_run_at IS NOT NULL",
    """CREATE TABLE dispatches (
            id INTEGER PRIMARY KEY,
            seq INTEGER NOT NULL,
            origin TEXT NOT NULL DEFAULT '',
            job_id INTEGER NOT NULL,
            job_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            priority INTEGER NOT NULL,
            not_before REAL NOT NULL,
            expires_at REAL,
            attempt INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            payload BLOB,
            idempotency_key TEXT,
            slot REAL,
            parent_run_id INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            outcome TEXT,
            dead_reason TEXT,
            last_error TEXT,
            current_run_id INTEGER,
            result BLOB,
            cancel_requested INTEGER NOT NULL DEFAULT 0
        )""",
    "CREATE UNIQUE INDEX dispatches_seq ON dispatches(seq)",
    "CREATE INDEX dispatches_queued ON dispatches(seq) WHERE status = 'queued'",
    "CREATE INDEX dispatches_status ON dispatches(status, job_id)",
    """CREATE UNIQUE INDEX dispatches_slot ON dispatches(job_id, slot)
            WHERE kind = 'schedule' AND slot IS NOT NULL""",
    """CREATE INDEX dispatches_cancel ON dispatches(id)
            WHERE cancel_requested = 1 AND status IN ('queued', 'running')""",
    """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            dispatch_id INTEGER,
            job_id INTEGER NOT NULL,
            job_name TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            heartbeat_at REAL,
            error TEXT,
            result BLOB,
            idempotency_key TEXT,
            reason TEXT,
            exit_code INTEGER,
            signal INTEGER,
            timed_out INTEGER NOT NULL DEFAULT 0,
            stdout TEXT,
            stderr TEXT,
            details BLOB,
            instance TEXT
        )""",
    "CREATE INDEX runs_running ON runs(id) WHERE status = 'running'",
    "CREATE INDEX runs_dispatch ON runs(dispatch_id)",
    "CREATE INDEX runs_job ON runs(job_id, id)",
    *ledger.DDL,
    # one row per runtime that has served this file: its latest health snapshot
    """CREATE TABLE instances (
            instance TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            stopped_at REAL,
            status BLOB
        )""",
]

# 2: messages (inboxes, OCS columns minus teams) and deliveries (store/sqlite/messages.py)
V2_MESSAGES: list[str] = [
    """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            from_agent TEXT NOT NULL,
            to_agent TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'text',
            subject TEXT,
            body TEXT NOT NULL,
            metadata BLOB,
            priority INTEGER NOT NULL DEFAULT 0,
            channel TEXT,
            delivery_to TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            delivered_at REAL,
            read_at REAL,
            ack_required INTEGER NOT NULL DEFAULT 0,
            ack_at REAL,
            delivery_attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            expires_at REAL,
            created_at REAL NOT NULL,
            job_id INTEGER,
            run_id INTEGER,
            owner TEXT,
            reply_to INTEGER REFERENCES messages(id) ON DELETE SET NULL
        )""",
    "CREATE INDEX messages_inbox ON messages(to_agent, status)",
    """CREATE INDEX messages_expiry ON messages(expires_at)
            WHERE expires_at IS NOT NULL AND status IN ('pending', 'delivered')""",
    """CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            channel TEXT,
            target TEXT,
            sink TEXT,
            body TEXT NOT NULL,
            job_id INTEGER,
            job_name TEXT,
            run_id INTEGER,
            dispatch_id INTEGER,
            outcome TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            next_attempt_at REAL,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            sent_at REAL
        )""",
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX deliveries_status ON deliveries(status, id)",
    "CREATE INDEX deliveries_run ON deliveries(run_id)",
]
