"""One OCS job row → a shepherd ``JobSpec`` and the list of its fields that are not
carried over, each with the reason. Pure: no I/O, no clock. The field-by-field table is
README "Switching from openclaw-scheduler"; in short: ``job_type`` watchdog and
``session_target`` isolated / main / shell choose the executor (``watchdog`` /
``agent`` / ``event`` / ``shell``), the payload and agent columns become its payload and
options, ``max_retries`` n becomes ``retry.max_attempts`` n + 1 on OCS's 30 s doubling
ladder, chains and approvals keep their fields (approvals gate ``chain`` dispatches,
as OCS's did), ``name`` / ``origin`` / ``delivery_opt_out_reason`` go into
``description``. A field that holds something shepherd does not do (v0.2 trust
columns, hybrid retrieval, a TTL, unknown columns) is listed, never dropped silently.
The module is longer than most because each executor's columns are mapped beside the
others, so one OCS row reads top to bottom in one place.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from shepherd.store.bounds import DAY
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec, decode_spec

__all__ = [
    "MAPPED_COLUMNS",
    "SENTINEL_CRON",
    "V02",
    "JobPlan",
    "NotCarried",
    "iso",
    "map_job",
    "slug",
    "to_epoch",
    "unknown_fields",
]

SENTINEL_CRON = "0 0 31 2 *"  # OCS's never-firing cron of at-jobs and children
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@/-]+")
# OCS v0.2 trust runtime columns (identity / authorization / evidence / contracts): D12
V02 = ("identity_", "authorization", "evidence", "contract_", "child_credential", "trust_")
_LIMITS = {
    "output_store_limit_bytes": ("output_store", 65536),
    "output_excerpt_limit_bytes": ("output_excerpt", 2000),
    "output_summary_limit_bytes": ("output_summary", 5000),
    "output_offload_threshold_bytes": ("output_offload", 65536),
}
_AGENT_OPTIONS = {
    "payload_model": "model",
    "payload_thinking": "thinking",
    "preferred_session_key": "session_key",
    "auth_profile": "auth_profile",
}
# every column of the v23 jobs table this module reads (the v0.2 ones are matched by prefix)
_COLUMNS = (
    "id name enabled schedule_kind schedule_at schedule_cron schedule_tz session_target "
    "agent_id payload_kind payload_message payload_model payload_thinking "
    "payload_timeout_seconds execution_intent execution_read_only overlap_policy "
    "run_timeout_ms max_queued_dispatches max_pending_approvals max_trigger_fanout "
    "delivery_mode delivery_channel delivery_to delivery_opt_out_reason origin "
    "delete_after_run ttl_hours parent_id trigger_on trigger_delay_s trigger_condition "
    "max_retries queued_count payload_scope resource_pool delivery_guarantee job_class "
    "approval_required approval_timeout_s approval_auto context_retrieval "
    "context_retrieval_limit output_store_limit_bytes output_excerpt_limit_bytes "
    "output_summary_limit_bytes output_offload_threshold_bytes preferred_session_key "
    "auth_profile job_type watchdog_target_label watchdog_check_cmd watchdog_timeout_min "
    "watchdog_alert_channel watchdog_alert_target watchdog_self_destruct "
    "watchdog_started_at next_run_at last_run_at last_status consecutive_errors "
    "created_at updated_at "
)
MAPPED_COLUMNS = frozenset(_COLUMNS.split())


class NotCarried(msgspec.Struct, frozen=True, kw_only=True):
    field: str
    value: str
    reason: str


class JobPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one OCS job becomes: ``spec`` (None when it cannot be mapped: ``error``)."""

    source_id: str
    ocs_name: str
    name: str
    spec: JobSpec | None
    error: str | None = None
    parent_source: str | None = None
    not_carried: list[NotCarried] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)


def slug(name: str, fallback: str) -> str:
    """A shepherd job name for an OCS name (letters, digits and ``_ . : @ / -``)."""
    text = _UNSAFE.sub("-", name.strip()).strip("-._:@/")[:200]
    return text or fallback


def to_epoch(value: Any) -> float | None:
    """Epoch seconds of OCS's UTC text (``YYYY-MM-DD HH:MM:SS``) or an ISO instant."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # ms or s
    try:
        when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def unknown_fields(
    row: dict[str, Any], known: frozenset[str], prefixes: tuple[str, ...] = ()
) -> tuple[list[NotCarried], list[NotCarried]]:
    """(v0.2 trust fields, unknown columns) of ``row`` that hold a value."""
    v02, unknown = [], []
    for column, value in row.items():
        if column in known or value is None or value == "":
            continue
        if column.startswith(prefixes):
            v02.append(
                NotCarried(
                    field=column,
                    value=_show(value),
                    reason="OCS v0.2 trust / identity / authorization runtime"
                    " is out of scope (D12)",
                )
            )
        else:
            unknown.append(
                NotCarried(
                    field=column,
                    value=_show(value),
                    reason="unknown column: this importer does not know it",
                )
            )
    return v02, unknown


def _show(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def map_job(row: dict[str, Any], names: dict[str, str]) -> JobPlan:
    """``row`` of OCS's ``jobs`` table as a shepherd spec; ``names`` is every OCS job id's
    wanted shepherd name (for ``parent``)."""
    source_id = str(row["id"])
    ocs_name = str(row.get("name") or "")
    name = names[source_id]
    lost: list[NotCarried] = []
    notes: list[str] = []

    def drop(field: str, reason: str) -> None:
        lost.append(NotCarried(field=field, value=_show(row.get(field)), reason=reason))

    v02, unknown = unknown_fields(row, MAPPED_COLUMNS, V02)
    lost += v02 + unknown
    executor, fields = _executor_fields(row, drop, notes)
    data: dict[str, Any] = {"name": name, "executor": executor, **fields}
    data["enabled"] = bool(row.get("enabled", 1))
    data["description"] = _description(row, ocs_name, source_id)
    timeout_ms = row.get("run_timeout_ms") or 300_000
    data["timeout"] = max(float(timeout_ms) / 1000.0, 0.001)
    data["overlap"] = row.get("overlap_policy") or "skip"
    data["max_queued"] = _num(row, "max_queued_dispatches", 25)
    data["delivery_guarantee"] = row.get("delivery_guarantee") or "at-most-once"
    pool = (row.get("resource_pool") or "").strip()
    if pool:
        data["pool"] = pool
    data["retry"] = _retry(int(row.get("max_retries") or 0), notes)
    data["max_fanout"] = min(_num(row, "max_trigger_fanout", 25), 1000)
    parent_source = _schedule(row, data, names, drop, notes)
    if row.get("approval_required"):
        data["approval"] = {
            "timeout": float(_num(row, "approval_timeout_s", 3600)),
            "on_timeout": row.get("approval_auto") or "reject",
            "max_pending": _num(row, "max_pending_approvals", 10),
            "sources": ["chain"],
        }
    retrieval = row.get("context_retrieval") or "none"
    if retrieval == "hybrid":
        drop("context_retrieval", "TF-IDF hybrid retrieval is out of scope (D12)")
    elif retrieval != "none":
        drop("context_retrieval", "the agent prompt carries no prior-run context (yet)")
    if retrieval != "none" and row.get("context_retrieval_limit") not in (None, 5):
        drop("context_retrieval_limit", "goes with context_retrieval")
    if row.get("ttl_hours") is not None:
        drop("ttl_hours", "shepherd keeps a disabled job until it is removed (`jobs rm`)")
    try:
        spec = decode_spec(data, JobSpec)
    except ConfigError as exc:
        return JobPlan(
            source_id=source_id,
            ocs_name=ocs_name,
            name=name,
            spec=None,
            error=str(exc),
            parent_source=parent_source,
            not_carried=lost,
            notes=notes,
        )
    return JobPlan(
        source_id=source_id,
        ocs_name=ocs_name,
        name=name,
        spec=spec,
        parent_source=parent_source,
        not_carried=lost,
        notes=notes,
    )


def _num(row: dict[str, Any], column: str, default: int) -> int:
    """An integer column; NULL is OCS's default (0 stays 0: ``max_trigger_fanout = 0``)."""
    value = row.get(column)
    return default if value is None else int(value)


def _description(row: dict[str, Any], ocs_name: str, source_id: str) -> str:
    parts = [f"openclaw-scheduler job {ocs_name!r} ({source_id})"]
    if row.get("origin"):
        parts.append(f"origin {row['origin']}")
    if row.get("delivery_opt_out_reason"):
        parts.append(f"delivery opt-out: {row['delivery_opt_out_reason']}")
    return "; ".join(parts)


def _retry(max_retries: int, notes: list[str]) -> dict[str, Any]:
    attempts = max_retries + 1
    if attempts > 1000:
        notes.append(f"max_retries {max_retries} capped at 999 (retry.max_attempts <= 1000)")
        attempts = 1000
    cap = 3600.0 if attempts <= 1 else min(30 * DAY, max(3600.0, 30.0 * 2 ** (attempts - 2)))
    return {"max_attempts": attempts, "base": 30.0, "factor": 2.0, "max_delay": cap}


def _executor_fields(
    row: dict[str, Any], drop: Any, notes: list[str]
) -> tuple[str, dict[str, Any]]:
    message = row.get("payload_message") or ""
    target = row.get("session_target") or "isolated"
    options: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    if (row.get("job_type") or "standard") == "watchdog":
        executor = "watchdog"
        for column, key in (
            ("watchdog_check_cmd", "check_cmd"),
            ("watchdog_timeout_min", "timeout_min"),
            ("watchdog_alert_target", "alert_to"),
            ("watchdog_alert_channel", "alert_channel"),
            ("watchdog_target_label", "label"),
        ):
            if row.get(column) not in (None, ""):
                options[key] = row[column]
        options["self_destruct"] = bool(row.get("watchdog_self_destruct", 1))
        started = to_epoch(row.get("watchdog_started_at"))
        if started is not None:
            options["started_at"] = iso(started)
        if (row.get("delivery_mode") or "none") != "none":
            notes.append(
                "a watchdog alerts options.alert_to; its job delivery is not used"
                " (neither did OCS use it)"
            )
        fields["options"] = options
        return executor, fields
    if target == "shell":
        executor = "shell"
        fields["target"] = message
        for column, (key, default) in _LIMITS.items():
            value = row.get(column)
            if value is not None and value != default:
                options[key] = int(value)
    elif target == "main":
        executor = "event"
        fields["payload"] = {"message": message}
        options["mode"] = "now"
        for column in ("payload_model", "payload_thinking", "preferred_session_key"):
            if row.get(column):
                drop(column, "a main-session job becomes a system event: no model or session")
    else:
        executor = "agent"
        if target != "isolated":
            notes.append(f"session_target {target!r} runs as isolated (as OCS does)")
        fields["target"] = str(row.get("agent_id") or "main")
        fields["payload"] = {"message": message}
        for column, key in _AGENT_OPTIONS.items():
            if row.get(column):
                options[key] = str(row[column])
        if (row.get("execution_intent") or "execute") != "execute":
            options["execution_intent"] = str(row["execution_intent"])
        if row.get("execution_read_only"):
            options["read_only"] = True
        if (row.get("job_class") or "standard") != "standard":
            options["job_class"] = str(row["job_class"])
        if (row.get("payload_scope") or "own") != "own":
            options["scope"] = str(row["payload_scope"])
        idle = row.get("payload_timeout_seconds") or 120
        fields["idle_timeout"] = 2.0 * float(idle)
    options.update(_delivery(row))
    fields["options"] = options
    return executor, fields


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    mode = row.get("delivery_mode") or "announce"
    to = row.get("delivery_to") or None
    out: dict[str, Any] = {"delivery": mode if to or mode == "none" else "none"}
    if to:
        out["delivery_to"] = str(to)
    if row.get("delivery_channel"):
        out["delivery_channel"] = str(row["delivery_channel"])
    return out


def _schedule(
    row: dict[str, Any], data: dict[str, Any], names: dict[str, str], drop: Any, notes: list[str]
) -> str | None:
    """Set the schedule or chain fields of ``data``; the parent's OCS id, if a child."""
    parent_id = row.get("parent_id")
    cron = (row.get("schedule_cron") or "").strip()
    if parent_id:
        parent = str(parent_id)
        data["parent"] = names.get(parent, f"missing-{parent[:8]}")
        data["trigger_on"] = row.get("trigger_on")
        data["trigger_delay"] = float(row.get("trigger_delay_s") or 0)
        if row.get("trigger_condition"):
            data["trigger_condition"] = row["trigger_condition"]
        return parent
    if (row.get("schedule_kind") or "cron") == "at":
        at = to_epoch(row.get("schedule_at"))
        # an unreadable schedule_at stays as text: validation refuses it, naming `at`
        data["at"] = iso(at) if at is not None else str(row.get("schedule_at"))
        data["delete_after_run"] = bool(row.get("delete_after_run"))
        return None
    if cron and cron != SENTINEL_CRON:
        data["cron"] = cron
        data["tz"] = row.get("schedule_tz") or "UTC"
        data["misfire"] = "skip"  # OCS: missed slots are not caught up (D4)
        data["delete_after_run"] = bool(row.get("delete_after_run"))
    else:
        notes.append("no schedule (the never-firing cron): runs only when enqueued")
    return None
