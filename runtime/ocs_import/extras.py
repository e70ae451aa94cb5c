"""The OCS rows beside the jobs: agents, delivery aliases, pending messages and the
dispatch queue, each → what shepherd stores (or the config needs), with what is not
carried. Pure.

- **agents**: id, name, capabilities (lower-cased; ``*`` kept) → the agents registry;
  ``delivery_to`` → ``delivery``. OCS's status (idle / busy / offline) is live state:
  an imported agent starts ``ready``. ``session_key``, ``brand_name``, ``last_seen_at``
  are not carried.
- **aliases**: shepherd's aliases live in the config (``[delivery] aliases``); one that
  the config lacks (or has with another channel / target) needs attention, and the
  report prints the TOML to add. Jobs keep ``@name`` in ``delivery_to``.
- **messages** (pending): every column but the team ones (``team_id``, ``member_id``,
  ``task_id``, ``team_mapped_at``) and the job / run references (OCS ids).
- **queue rows** pending / claimed / awaiting approval → a queued dispatch: ``manual`` →
  ``run_now``, ``chain`` → ``chain``, ``retry`` → ``retry`` (the attempts already used
  kept); awaiting approval → held again by the job's gate (a new request), unless its
  approval was already approved.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

from shepherd.runtime.ocs_import.mapping import NotCarried, to_epoch, unknown_fields
from shepherd.store.errors import ConfigError
from shepherd.store.models import MESSAGE_KINDS, AgentSpec, normalize_capabilities
from shepherd.store.ops import NewMessage
from shepherd.store.ops.imports import ImportRun

__all__ = [
    "AgentPlan",
    "AliasPlan",
    "DispatchPlan",
    "MessagePlan",
    "digest",
    "map_agent",
    "map_alias",
    "map_dispatch",
    "map_message",
    "map_run",
]
_OUTCOMES = frozenset({"ok", "error", "timeout", "crashed", "cancelled", "skipped"})

_AGENT_COLUMNS_TEXT = (
    "id name status last_seen_at session_key capabilities delivery_channel delivery_to "
    "brand_name created_at "
)
_AGENT_COLUMNS = frozenset(_AGENT_COLUMNS_TEXT.split())
_MESSAGE_COLUMNS_TEXT = (
    "id from_agent to_agent team_id member_id task_id reply_to kind subject body metadata "
    "priority channel delivery_to status delivered_at read_at ack_required ack_at "
    "delivery_attempts last_error team_mapped_at expires_at created_at job_id run_id "
    "owner "
)
_MESSAGE_COLUMNS = frozenset(_MESSAGE_COLUMNS_TEXT.split())
_KINDS = {"manual": "run_now", "chain": "chain", "retry": "retry"}


def digest(row: dict[str, Any]) -> str:
    """A short hash of a source row (what changed since the last import)."""
    raw = msgspec.json.encode(row, order="sorted", enc_hook=str)
    return hashlib.sha256(raw).hexdigest()[:20]


class AgentPlan(msgspec.Struct, frozen=True, kw_only=True):
    source_id: str
    spec: AgentSpec | None
    error: str | None = None
    not_carried: list[NotCarried] = msgspec.field(default_factory=list)


def map_agent(row: dict[str, Any]) -> AgentPlan:
    source_id = str(row.get("id"))
    lost: list[NotCarried] = []
    for column, why in (
        ("session_key", "an agent's session is the job's (options.session_key)"),
        ("brand_name", "shepherd has no brand name"),
        ("delivery_channel", "an agent's delivery is one target (delivery_to)"),
    ):
        if row.get(column):
            lost.append(NotCarried(field=column, value=str(row[column]), reason=why))
    if (row.get("status") or "idle") == "offline":
        lost.append(
            NotCarried(
                field="status",
                value="offline",
                reason="an imported agent starts ready; mark it with"
                " `agents update ID --status offline`",
            )
        )
    v02, unknown = unknown_fields(row, _AGENT_COLUMNS)
    lost += v02 + unknown
    try:
        caps = json.loads(row.get("capabilities") or "[]")
    except ValueError:
        caps = str(row.get("capabilities") or "").split(",")
    good: list[str] = []
    for cap in caps if isinstance(caps, list) else []:
        try:
            good += normalize_capabilities([cap])
        except ConfigError as exc:
            lost.append(NotCarried(field="capabilities", value=str(cap), reason=str(exc)))
    try:
        spec = AgentSpec(
            id=source_id,
            name=str(row.get("name") or ""),
            capabilities=good,
            delivery=row.get("delivery_to") or None,
        )
    except ConfigError as exc:
        return AgentPlan(source_id=source_id, spec=None, error=str(exc), not_carried=lost)
    return AgentPlan(source_id=source_id, spec=spec, not_carried=lost)


class AliasPlan(msgspec.Struct, frozen=True, kw_only=True):
    alias: str
    channel: str
    target: str
    status: str  # in config | missing from config | differs in config


def map_alias(row: dict[str, Any], configured: dict[str, tuple[str, str]]) -> AliasPlan:
    alias = str(row.get("alias") or "").lstrip("@")
    channel, target = str(row.get("channel") or ""), str(row.get("target") or "")
    have = configured.get(alias)
    status = (
        "missing from config"
        if have is None
        else "in config"
        if have == (channel, target)
        else "differs in config"
    )
    return AliasPlan(alias=alias, channel=channel, target=target, status=status)


class MessagePlan(msgspec.Struct, frozen=True, kw_only=True):
    source_id: str
    message: NewMessage | None
    created_at: float | None = None
    reply_source: str | None = None
    error: str | None = None
    not_carried: list[NotCarried] = msgspec.field(default_factory=list)


def map_message(row: dict[str, Any]) -> MessagePlan:
    source_id = str(row.get("id"))
    lost: list[NotCarried] = []
    for column, why in (
        ("team_id", "team adapter (out of scope, D12)"),
        ("member_id", "team adapter (out of scope, D12)"),
        ("task_id", "team adapter (out of scope, D12)"),
        ("team_mapped_at", "team adapter (out of scope, D12)"),
        ("job_id", "an OCS job reference"),
        ("run_id", "an OCS run reference"),
    ):
        if row.get(column):
            lost.append(NotCarried(field=column, value=str(row[column]), reason=why))
    v02, unknown = unknown_fields(row, _MESSAGE_COLUMNS)
    lost += v02 + unknown
    kind = row.get("kind") or "text"
    body = row.get("body") or ""
    if kind not in MESSAGE_KINDS or not row.get("from_agent") or not row.get("to_agent"):
        return MessagePlan(
            source_id=source_id,
            message=None,
            not_carried=lost,
            error=f"kind {kind!r}, from {row.get('from_agent')!r}, to"
            f" {row.get('to_agent')!r}: not a message shepherd takes",
        )
    meta = row.get("metadata")
    metadata: bytes | None = None
    if meta:
        try:
            metadata = json.dumps(json.loads(meta)).encode()
        except ValueError:
            metadata = json.dumps({"text": str(meta)}).encode()
    priority = row.get("priority") or 0
    message = NewMessage(
        from_agent=str(row["from_agent"]),
        to_agent=str(row["to_agent"]),
        body=str(body),
        kind=str(kind),
        subject=row.get("subject"),
        priority=min(max(int(priority), 0), 2),
        metadata=metadata,
        channel=row.get("channel"),
        delivery_to=row.get("delivery_to"),
        expires_at=to_epoch(row.get("expires_at")),
        owner=row.get("owner"),
        ack_required=bool(row.get("ack_required")),
    )
    reply = row.get("reply_to")
    return MessagePlan(
        source_id=source_id,
        message=message,
        not_carried=lost,
        created_at=to_epoch(row.get("created_at")),
        reply_source=str(reply) if reply else None,
    )


class DispatchPlan(msgspec.Struct, frozen=True, kw_only=True):
    source_id: str
    job_source: str
    kind: str | None  # None: not carried (``error`` says why)
    status: str  # OCS's
    not_before: float
    attempt: int = 0
    gate: bool = True
    source_run: str | None = None
    error: str | None = None


def map_dispatch(
    row: dict[str, Any], runs: dict[str, dict[str, Any]], approved: set[str], now: float
) -> DispatchPlan:
    source_id = str(row.get("id"))
    status = str(row.get("status"))
    ocs_kind = str(row.get("dispatch_kind") or "")
    when = to_epoch(row.get("scheduled_for")) or now
    kind = _KINDS.get(ocs_kind)
    source_run = row.get("source_run_id") or row.get("retry_of_run_id")
    plan = DispatchPlan(
        source_id=source_id,
        job_source=str(row.get("job_id")),
        kind=kind,
        status=status,
        not_before=max(when, 0.0),
        source_run=str(source_run) if source_run else None,
    )
    if kind is None:
        return msgspec.structs.replace(plan, error=f"unknown dispatch kind {ocs_kind!r}")
    attempt = 0
    if kind == "retry":
        failed = runs.get(str(row.get("retry_of_run_id")))
        attempt = int(failed.get("retry_count") or 0) if failed else 0
    gate = not (status == "awaiting_approval" and source_id in approved)
    return msgspec.structs.replace(plan, attempt=attempt, gate=gate)


def map_run(row: dict[str, Any]) -> ImportRun | None:
    """A finished OCS run as a read-only run record (None: not finished)."""
    status = str(row.get("status"))
    started = to_epoch(row.get("started_at")) or to_epoch(row.get("finished_at"))
    if status not in _OUTCOMES or started is None:
        return None
    details = {"imported_from": "openclaw-scheduler", "ocs_run_id": str(row.get("id"))}
    for key in ("session_key", "shell_stdout_path", "shell_stderr_path", "triggered_by_run"):
        if row.get(key):
            details[key] = str(row[key])
    summary = row.get("summary")
    code = row.get("shell_exit_code")
    return ImportRun(
        source_id=str(row.get("id")),
        job_source=str(row.get("job_id")),
        status=status,
        started_at=started,
        finished_at=to_epoch(row.get("finished_at")),
        attempt=int(row.get("retry_count") or 0) + 1,
        error=row.get("error_message"),
        result=msgspec.json.encode({"summary": str(summary)}) if summary else None,
        exit_code=int(code) if code is not None else None,
        timed_out=bool(row.get("shell_timed_out")),
        stdout=row.get("shell_stdout"),
        stderr=row.get("shell_stderr"),
        details=msgspec.json.encode(details),
    )
