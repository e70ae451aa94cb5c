"""OCS databases for the importer's tests, built from the documented schema
(SEMANTICS.md §2.8, schema version 23; column names as in seeds 002 / 004).

``OcsDb(path)`` creates the tables (WAL, as OCS opens its file) and offers ``job(...)``
and friends, each with OCS's column defaults; ``realistic(path, now)`` builds the
fixture of the end-to-end tests: 30+ jobs of every kind, chains, approvals, aliases,
agents, queued dispatches and pending messages. Times are OCS's UTC text.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

from cronsim import CronSim

SCHEMA = [
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1,
        schedule_kind TEXT DEFAULT 'cron', schedule_at TEXT, schedule_cron TEXT NOT NULL,
        schedule_tz TEXT DEFAULT 'UTC', session_target TEXT DEFAULT 'isolated',
        agent_id TEXT DEFAULT 'main', payload_kind TEXT, payload_message TEXT NOT NULL,
        payload_model TEXT, payload_thinking TEXT, payload_timeout_seconds INTEGER DEFAULT 120,
        execution_intent TEXT DEFAULT 'execute', execution_read_only INTEGER DEFAULT 0,
        overlap_policy TEXT DEFAULT 'skip', run_timeout_ms INTEGER NOT NULL DEFAULT 300000,
        max_queued_dispatches INTEGER DEFAULT 25, max_pending_approvals INTEGER DEFAULT 10,
        max_trigger_fanout INTEGER DEFAULT 25, delivery_mode TEXT DEFAULT 'announce',
        delivery_channel TEXT, delivery_to TEXT, delivery_opt_out_reason TEXT, origin TEXT,
        delete_after_run INTEGER DEFAULT 0, ttl_hours INTEGER, parent_id TEXT
        REFERENCES jobs(id), trigger_on TEXT, trigger_delay_s INTEGER DEFAULT 0,
        trigger_condition TEXT, max_retries INTEGER DEFAULT 0, queued_count INTEGER DEFAULT 0,
        payload_scope TEXT DEFAULT 'own', resource_pool TEXT,
        delivery_guarantee TEXT DEFAULT 'at-most-once', job_class TEXT DEFAULT 'standard',
        approval_required INTEGER DEFAULT 0, approval_timeout_s INTEGER DEFAULT 3600,
        approval_auto TEXT DEFAULT 'reject', context_retrieval TEXT DEFAULT 'none',
        context_retrieval_limit INTEGER DEFAULT 5,
        output_store_limit_bytes INTEGER DEFAULT 65536,
        output_excerpt_limit_bytes INTEGER DEFAULT 2000,
        output_summary_limit_bytes INTEGER DEFAULT 5000,
        output_offload_threshold_bytes INTEGER DEFAULT 65536, preferred_session_key TEXT,
        auth_profile TEXT, job_type TEXT DEFAULT 'standard', watchdog_target_label TEXT,
        watchdog_check_cmd TEXT, watchdog_timeout_min INTEGER, watchdog_alert_channel TEXT,
        watchdog_alert_target TEXT, watchdog_self_destruct INTEGER DEFAULT 1,
        watchdog_started_at TEXT,
        identity_provider TEXT, identity_subject TEXT, identity_trust_level TEXT,
        authorization_provider TEXT, authorization_policy TEXT, authorization_proof TEXT,
        evidence_mode TEXT, contract_required_trust TEXT, contract_schema TEXT,
        child_credential_policy TEXT,
        next_run_at TEXT, last_run_at TEXT, last_status TEXT,
        consecutive_errors INTEGER DEFAULT 0,
        created_at TEXT DEFAULT (datetime('now')), updated_at TEXT DEFAULT (datetime('now')),
        CHECK (delivery_mode NOT IN ('announce', 'announce-always')
               OR (delivery_to IS NOT NULL AND delivery_to != ''))
    )""",
    "CREATE INDEX idx_jobs_next ON jobs(next_run_at) WHERE enabled = 1",
    "CREATE INDEX idx_jobs_parent ON jobs(parent_id)",
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        status TEXT NOT NULL, started_at TEXT, finished_at TEXT, duration_ms INTEGER,
        last_heartbeat TEXT, session_key TEXT, session_id TEXT, summary TEXT,
        error_message TEXT, shell_exit_code INTEGER, shell_signal TEXT,
        shell_timed_out INTEGER, shell_stdout TEXT, shell_stderr TEXT,
        shell_stdout_path TEXT, shell_stderr_path TEXT, shell_stdout_bytes INTEGER,
        shell_stderr_bytes INTEGER, dispatched_at TEXT, run_timeout_ms INTEGER,
        retry_count INTEGER DEFAULT 0, retry_of TEXT, triggered_by_run TEXT,
        dispatch_queue_id TEXT, context_summary TEXT, replay_of TEXT, idempotency_key TEXT
    )""",
    """CREATE TABLE messages (
        id TEXT PRIMARY KEY, from_agent TEXT NOT NULL, to_agent TEXT NOT NULL, team_id TEXT,
        member_id TEXT, task_id TEXT, reply_to TEXT REFERENCES messages(id),
        kind TEXT DEFAULT 'text', subject TEXT, body TEXT NOT NULL, metadata TEXT,
        priority INTEGER DEFAULT 0, channel TEXT, delivery_to TEXT,
        status TEXT DEFAULT 'pending', delivered_at TEXT, read_at TEXT,
        ack_required INTEGER DEFAULT 0, ack_at TEXT, delivery_attempts INTEGER DEFAULT 0,
        last_error TEXT, team_mapped_at TEXT, expires_at TEXT,
        created_at TEXT DEFAULT (datetime('now')), job_id TEXT, run_id TEXT, owner TEXT
    )""",
    """CREATE TABLE agents (
        id TEXT PRIMARY KEY, name TEXT, status TEXT DEFAULT 'idle', last_seen_at TEXT,
        session_key TEXT, capabilities TEXT, delivery_channel TEXT, delivery_to TEXT,
        brand_name TEXT, created_at TEXT DEFAULT (datetime('now'))
    )""",
    """CREATE TABLE delivery_aliases (
        alias TEXT PRIMARY KEY, channel TEXT, target TEXT NOT NULL, description TEXT,
        created_at TEXT DEFAULT (datetime('now'))
    )""",
    """CREATE TABLE approvals (
        id TEXT PRIMARY KEY, job_id TEXT REFERENCES jobs(id), run_id TEXT,
        dispatch_queue_id TEXT, status TEXT DEFAULT 'pending',
        requested_at TEXT DEFAULT (datetime('now')), resolved_at TEXT, resolved_by TEXT,
        notes TEXT
    )""",
    """CREATE TABLE job_dispatch_queue (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id),
        dispatch_kind TEXT NOT NULL, status TEXT DEFAULT 'pending', scheduled_for TEXT,
        source_run_id TEXT, retry_of_run_id TEXT, created_at TEXT DEFAULT (datetime('now')),
        claimed_at TEXT, processed_at TEXT
    )""",
    "CREATE INDEX idx_dispatch_due ON job_dispatch_queue(status, scheduled_for)",
    """CREATE TABLE idempotency_ledger (
        key TEXT PRIMARY KEY, job_id TEXT, run_id TEXT, status TEXT, claimed_at TEXT,
        released_at TEXT, result_hash TEXT, expires_at TEXT
    )""",
    """CREATE TABLE task_tracker (
        id TEXT PRIMARY KEY, name TEXT, created_by TEXT, expected_agents TEXT,
        timeout_s INTEGER DEFAULT 600, status TEXT, completed_at TEXT,
        delivery_channel TEXT, delivery_to TEXT, summary TEXT
    )""",
    """CREATE TABLE task_tracker_agents (
        tracker_id TEXT, agent_label TEXT, status TEXT, started_at TEXT, finished_at TEXT,
        exit_message TEXT, error TEXT, session_key TEXT, last_heartbeat TEXT
    )""",
    """CREATE TABLE message_receipts (
        id TEXT PRIMARY KEY, message_id TEXT, event_type TEXT, created_at TEXT
    )""",
    "CREATE TABLE team_tasks (id TEXT PRIMARY KEY, team_id TEXT, status TEXT)",
    "CREATE TABLE team_mailbox_events (id TEXT PRIMARY KEY, team_id TEXT, event TEXT)",
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)",
]


def text(epoch: float | None) -> str | None:
    """OCS's UTC text for an epoch."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cron_next(cron: str, tz: str, after: float) -> float:
    """The next fire after ``after`` (as OCS computes ``next_run_at``)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    return next(iter(CronSim(cron, datetime.fromtimestamp(after, zone)))).timestamp()


class OcsDb:
    def __init__(self, path: str, *, version: int = 23) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        for stmt in SCHEMA:
            self.conn.execute(stmt)
        self.conn.executemany(
            "INSERT INTO schema_migrations (version) VALUES (?)",
            [(v,) for v in range(1, version + 1)],
        )
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.conn.close()

    def _insert(self, table: str, values: dict[str, Any]) -> None:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(values.values()))

    def job(self, name: str, **cols: Any) -> str:
        job_id = cols.pop("id", None) or str(uuid.uuid4())
        values: dict[str, Any] = {
            "id": job_id,
            "name": name,
            "schedule_cron": "0 0 31 2 *",
            "payload_message": f"do {name}",
            "delivery_mode": "none",
            **cols,
        }
        self._insert("jobs", values)
        return job_id

    def cron_job(self, name: str, cron: str, tz: str, now: float, **cols: Any) -> str:
        cols.setdefault("next_run_at", text(cron_next(cron, tz, now)))
        return self.job(name, schedule_cron=cron, schedule_tz=tz, **cols)

    def at_job(self, name: str, at: float, **cols: Any) -> str:
        return self.job(name, schedule_kind="at", schedule_at=text(at), next_run_at=None, **cols)

    def child(self, name: str, parent: str, trigger_on: str, **cols: Any) -> str:
        return self.job(name, parent_id=parent, trigger_on=trigger_on, next_run_at=None, **cols)

    def run(self, job_id: str, status: str, **cols: Any) -> str:
        run_id = cols.pop("id", None) or str(uuid.uuid4())
        self._insert("runs", {"id": run_id, "job_id": job_id, "status": status, **cols})
        return run_id

    def dispatch(self, job_id: str, kind: str, status: str = "pending", **cols: Any) -> str:
        dispatch_id = cols.pop("id", None) or str(uuid.uuid4())
        self._insert(
            "job_dispatch_queue",
            {"id": dispatch_id, "job_id": job_id, "dispatch_kind": kind, "status": status, **cols},
        )
        return dispatch_id

    def message(self, from_agent: str, to_agent: str, body: str, **cols: Any) -> str:
        message_id = cols.pop("id", None) or str(uuid.uuid4())
        self._insert(
            "messages",
            {
                "id": message_id,
                "from_agent": from_agent,
                "to_agent": to_agent,
                "body": body,
                **cols,
            },
        )
        return message_id

    def agent(self, agent_id: str, **cols: Any) -> None:
        self._insert("agents", {"id": agent_id, **cols})

    def alias(self, alias: str, channel: str, target: str) -> None:
        self._insert("delivery_aliases", {"alias": alias, "channel": channel, "target": target})

    def approval(self, job_id: str, dispatch_id: str, status: str = "pending") -> None:
        self._insert(
            "approvals",
            {
                "id": str(uuid.uuid4()),
                "job_id": job_id,
                "dispatch_queue_id": dispatch_id,
                "status": status,
            },
        )

    def sql(self, statement: str, *args: Any) -> None:
        self.conn.execute(statement, args)


# (name, cron, zone) of the realistic fixture's plain cron jobs: several zones, DST ones
CRONS = [
    ("digest-berlin", "0 8 * * 1-5", "Europe/Berlin"),
    ("night-backup", "30 2 * * *", "America/New_York"),  # in the spring-forward gap
    ("half-hourly", "30 * * * *", "America/New_York"),  # an interval across fall-back
    ("tokyo-report", "15 9 * * *", "Asia/Tokyo"),
    ("sydney-sync", "0 */6 * * *", "Australia/Sydney"),
    ("utc-5min", "*/5 * * * *", "UTC"),
    ("london-weekly", "0 7 * * 1", "Europe/London"),
    ("kolkata", "45 13 * * *", "Asia/Kolkata"),
    ("monthly", "0 0 1 * *", "America/Los_Angeles"),
    ("chatham", "0 12 * * *", "Pacific/Chatham"),
    ("sao-paulo", "10 10 * * 1-6", "America/Sao_Paulo"),
    ("berlin-1am", "0 1 * * *", "Europe/Berlin"),
    ("ny-hourly", "0 * * * *", "America/New_York"),
    ("denver", "20 4 * * *", "America/Denver"),
]

# every unmappable field the realistic fixture holds: (job name, field)
UNMAPPABLE = {
    ("trusted-agent", "identity_provider"),
    ("trusted-agent", "identity_trust_level"),
    ("trusted-agent", "authorization_policy"),
    ("trusted-agent", "contract_required_trust"),
    ("hybrid-recall", "context_retrieval"),
    ("recent-recall", "context_retrieval"),
    ("recent-recall", "context_retrieval_limit"),
    ("ttl-job", "ttl_hours"),
    ("main-heartbeat", "payload_model"),
}


def realistic(path: str, now: float) -> dict[str, str]:
    """The realistic fixture; its job ids by name."""
    db = OcsDb(path)
    ids: dict[str, str] = {}
    for name, cron, tz in CRONS:
        ids[name] = db.cron_job(
            name, cron, tz, now, delivery_mode="announce", delivery_to="@ops", max_retries=2
        )
    ids["shell-cleanup"] = db.cron_job(
        "shell-cleanup",
        "0 4 * * *",
        "Europe/Paris",
        now,
        session_target="shell",
        payload_message="rm -rf /tmp/x",
        overlap_policy="queue",
        max_queued_dispatches=3,
        resource_pool="disk",
        output_excerpt_limit_bytes=1000,
    )
    ids["main-heartbeat"] = db.cron_job(
        "main-heartbeat", "*/30 * * * *", "UTC", now, session_target="main", payload_model="gpt-x"
    )
    ids["watchdog-deploy"] = db.cron_job(
        "watchdog-deploy",
        "*/5 * * * *",
        "UTC",
        now,
        job_type="watchdog",
        watchdog_check_cmd="test -f /tmp/done && echo done",
        watchdog_timeout_min=30,
        watchdog_alert_target="@ops",
        watchdog_alert_channel="telegram",
        watchdog_target_label="deploy",
        watchdog_started_at=text(now - 600),
    )
    ids["isolated-thinker"] = db.cron_job(
        "isolated-thinker",
        "0 9 * * *",
        "Europe/Berlin",
        now,
        agent_id="coder",
        payload_model="claude",
        payload_thinking="high",
        preferred_session_key="s:think",
        auth_profile="work",
        execution_intent="plan",
        execution_read_only=1,
        job_class="pre_compaction_flush",
        payload_scope="global",
        payload_timeout_seconds=300,
        delivery_guarantee="at-least-once",
        overlap_policy="allow",
        delivery_opt_out_reason="quiet job",
        origin="user",
    )
    ids["trusted-agent"] = db.cron_job(
        "trusted-agent",
        "0 6 * * *",
        "UTC",
        now,
        identity_provider="oidc",
        identity_trust_level="high",
        authorization_policy="strict",
        contract_required_trust="high",
    )
    ids["hybrid-recall"] = db.cron_job(
        "hybrid-recall", "0 10 * * *", "UTC", now, context_retrieval="hybrid"
    )
    ids["recent-recall"] = db.cron_job(
        "recent-recall",
        "0 11 * * *",
        "UTC",
        now,
        context_retrieval="recent",
        context_retrieval_limit=3,
    )
    ids["ttl-job"] = db.cron_job("ttl-job", "0 12 * * *", "UTC", now, ttl_hours=48)
    ids["disabled-cron"] = db.cron_job("disabled-cron", "0 13 * * *", "UTC", now, enabled=0)
    ids["null-next"] = db.cron_job("null-next", "0 14 * * *", "Europe/Berlin", now)
    db.sql("UPDATE jobs SET next_run_at = NULL WHERE id = ?", ids["null-next"])
    # at-jobs: the sentinel cron, one future, one delete-after-run, one that has run
    ids["at-future"] = db.at_job("at-future", now + 7200, delete_after_run=1)
    ids["at-keep"] = db.at_job("at-keep", now + 86400)
    ids["at-done"] = db.at_job("at-done", now - 3600, enabled=0, last_run_at=text(now - 3590))
    # a three-level chain with a failure branch and an approval-gated child
    ids["build"] = db.cron_job(
        "build",
        "0 3 * * *",
        "UTC",
        now,
        session_target="shell",
        payload_message="make",
        max_retries=3,
    )
    ids["test"] = db.child(
        "test",
        ids["build"],
        "success",
        session_target="shell",
        payload_message="make test",
        trigger_delay_s=30,
    )
    ids["deploy"] = db.child(
        "deploy",
        ids["test"],
        "success",
        session_target="shell",
        payload_message="./deploy.sh",
        approval_required=1,
        approval_timeout_s=1800,
        approval_auto="approve",
        delivery_to="@ops",
        max_pending_approvals=5,
    )
    ids["build-failed"] = db.child(
        "build-failed",
        ids["build"],
        "failure",
        payload_message="Tell ops the build failed",
        trigger_condition="contains:error",
        delivery_mode="announce",
        delivery_to="@ops",
    )
    ids["cleanup-after"] = db.child(
        "cleanup-after",
        ids["build"],
        "complete",
        session_target="shell",
        payload_message="make clean",
        enabled=0,
    )
    ids["fanout-parent"] = db.cron_job(
        "fanout-parent", "0 5 * * *", "UTC", now, max_trigger_fanout=3
    )
    for k in range(3):
        ids[f"fan-{k}"] = db.child(f"fan-{k}", ids["fanout-parent"], "complete")
    # agents, aliases
    db.agent("main", name="Main Agent", capabilities='["*"]')
    db.agent(
        "coder",
        name="Coder",
        capabilities='["Python", "git"]',
        status="busy",
        session_key="agent:coder",
        delivery_to="@ops",
    )
    db.alias("ops", "telegram", "-100123")
    db.alias("oncall", "slack", "#oncall")
    # the queue: a pending manual run, a pending retry, an awaiting-approval chain
    # dispatch, a claimed one, and done rows (history)
    failed = db.run(ids["digest-berlin"], "error", retry_count=1, started_at=text(now - 100))
    ids["q-manual"] = db.dispatch(ids["tokyo-report"], "manual", scheduled_for=text(now - 1))
    ids["q-retry"] = db.dispatch(
        ids["digest-berlin"],
        "retry",
        scheduled_for=text(now + 60),
        source_run_id=failed,
        retry_of_run_id=failed,
    )
    parent_run = db.run(ids["test"], "ok")
    ids["q-approval"] = db.dispatch(
        ids["deploy"],
        "chain",
        "awaiting_approval",
        scheduled_for=text(now - 30),
        source_run_id=parent_run,
    )
    db.approval(ids["deploy"], ids["q-approval"])
    ids["q-claimed"] = db.dispatch(
        ids["shell-cleanup"], "manual", "claimed", scheduled_for=text(now - 5)
    )
    db.dispatch(ids["shell-cleanup"], "manual", "done", scheduled_for=text(now - 5000))
    for k in range(5):
        db.run(ids["utc-5min"], "ok", started_at=text(now - 300 * (k + 1)))
    # messages: pending ones (a reply, a typed one), and history
    first = db.message("ops", "main", "disk at 91%", kind="fact", priority=1)
    db.message("main", "ops", "on it", reply_to=first)
    db.message("planner", "coder", "write the report", kind="task", owner="ops", team_id="t1")
    db.message("ops", "main", "old", status="read")
    db.close()
    return ids
