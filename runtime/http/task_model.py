"""Dispatch's task model on shepherd (SEMANTICS D15): its JSON shapes, its states and
its 0-10 priority, and how a dispatch reads as a task (``task_of``). Pure: no I/O; the
routes are in ``runtime/http/tasks.py``.

=============  ==============================================================
Dispatch       shepherd
=============  ==============================================================
PENDING        dispatch ``queued`` / ``awaiting_approval``; ``running`` with no
               agent chosen and no worker holding its lease
ASSIGNED       ``running``: assignment chose the agent, or a worker claimed the
               lease and has not reported progress yet
RUNNING        ``running``: the lease holder renewed it or reported progress
COMPLETED      ``done``
FAILED         ``dead`` (a failure, attempts used up or not retryable)
TIMEOUT        ``dead`` after a ``timeout`` outcome
CANCELLED      ``cancelled``
=============  ==============================================================

Priority 0-1 background, 2-3 low, 4-6 normal, 7-8 high, 9-10 critical (``level_of``);
a task keeps the number it was created with.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, assert_never

import msgspec

from shepherd.actors.executors.leases import Lease
from shepherd.actors.messages import OutcomeEvent
from shepherd.store.errors import ConfigError
from shepherd.store.models import Dispatch

__all__ = [
    "ADHOC_JOB",
    "DEFAULT_TIMEOUT",
    "STATES",
    "CompleteBody",
    "CreateTask",
    "FailBody",
    "PatchTask",
    "ProgressBody",
    "Stats",
    "Task",
    "TaskAgent",
    "TaskReport",
    "TasksQuery",
    "assignment",
    "is_task_job",
    "level_of",
    "state_after",
    "task_field",
    "task_of",
    "task_status",
]

ADHOC_JOB = "dispatch-task"
DEFAULT_TIMEOUT = 300  # Dispatch's default_timeout_ms
STATES = ("PENDING", "ASSIGNED", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")


def level_of(priority: int) -> str:
    """Dispatch's 0-10 priority → shepherd's level (D15)."""
    if priority <= 1:
        return "background"
    if priority <= 3:
        return "low"
    if priority <= 6:
        return "normal"
    return "high" if priority <= 8 else "critical"


LEVEL_PRIORITY = {"critical": 10, "high": 8, "normal": 5, "low": 3, "background": 0}


def task_status(d: Dispatch, lease: Lease | None) -> str:
    """queued → PENDING; running → ASSIGNED (an agent has it or was chosen), RUNNING
    (it reported progress); done → COMPLETED; dead → TIMEOUT / FAILED; cancelled."""
    if d.status in ("queued", "awaiting_approval"):
        return "PENDING"
    if d.status == "running":
        if lease is None:
            return "ASSIGNED" if d.agent else "PENDING"
        if not lease.claimed:
            return "ASSIGNED" if lease.agent else "PENDING"
        active = lease.renewals > 0 or lease.progress is not None
        return "RUNNING" if active else "ASSIGNED"
    if d.status == "done":
        return "COMPLETED"
    if d.status == "dead":
        return "TIMEOUT" if d.outcome == "timeout" else "FAILED"
    return "CANCELLED"


def state_after(ev: OutcomeEvent) -> str:
    """The task's state once the outcome ``ev`` is committed: PENDING when a retry
    follows, else its final state (as ``task_status`` reads the dispatch then)."""
    match ev.status:
        case "queued":
            return "PENDING"
        case "done":
            return "COMPLETED"
        case "dead":
            return "TIMEOUT" if ev.outcome == "timeout" else "FAILED"
        case "cancelled":
            return "CANCELLED"
        case _:
            assert_never(ev.status)


class CreateTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    description: Annotated[str, msgspec.Meta(max_length=100_000)] = ""
    owner: str | None = None
    required_capabilities: list[str] = msgspec.field(default_factory=list)
    priority: Annotated[int, msgspec.Meta(ge=0, le=10)] = 5
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    source: str = "agent"  # agent | manual
    parent_task_id: str | None = None
    timeout_seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = DEFAULT_TIMEOUT
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    retry_eligible: bool = True


class Task(msgspec.Struct, kw_only=True):
    task_id: str
    title: str
    description: str
    owner: str
    required_capabilities: list[str]
    status: str  # PENDING ASSIGNED RUNNING COMPLETED FAILED TIMEOUT CANCELLED
    assigned_agent: str | None
    priority: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    source: str
    parent_task_id: str | None
    result: Any
    error: str | None
    progress: int | None
    progress_message: str | None
    retry_count: int
    max_retries: int
    retry_eligible: bool
    timeout_seconds: float
    job: str
    created_at: str
    updated_at: str
    assigned_at: str | None
    completed_at: str | None


class TasksQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: list[str] | None = None
    owner: str | None = None
    assigned_agent: str | None = None
    agent: str | None = None  # Dispatch's query name for assigned_agent
    source: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class ProgressBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    progress: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    message: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class CompleteBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    result: Any = None


class FailBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    error: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    retry_eligible: bool = True


class PatchTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Dispatch's ``PATCH /tasks/{id}``: only a cancel (a task's fields are its
    dispatch's, which do not change once queued)."""

    status: Literal["CANCELLED", "cancelled"]


class TaskReport(msgspec.Struct, kw_only=True):
    task_id: str
    status: str
    run_id: int


class Stats(msgspec.Struct, kw_only=True):
    total_pending: int
    total_in_progress: int
    total_completed: int
    total_failed: int
    avg_completion_ms: float


class TaskAgent(msgspec.Struct, kw_only=True):
    name: str
    status: str
    capabilities: list[str]
    active_tasks: int
    drained: bool


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def is_task_job(name: str) -> bool:
    return name == ADHOC_JOB or name.startswith(ADHOC_JOB + ":")


def assignment(d: Dispatch, lease: Lease | None, status: str) -> tuple[str | None, float | None]:
    """Who has the task (in ``status``), and since when: nobody while it is PENDING (an
    earlier attempt's agent is not this one's); the worker holding its run's lease when
    assignment chose nobody, since its claim; else the agent on the dispatch (chosen by
    assignment, or the worker that claimed its run: the store keeps it after the run
    ends) since its ``assigned_at``."""
    if status == "PENDING":
        return None, None
    if lease is not None and lease.holder and lease.holder != lease.agent:
        return lease.holder, lease.claimed_at
    return d.agent, d.assigned_at if d.agent else None


def task_of(d: Dispatch, lease: Lease | None, timeout: float) -> Task:
    p = d.payload or {}
    adhoc = is_task_job(d.job_name) and "title" in p
    status = task_status(d, lease)
    final = d.status in ("done", "dead", "cancelled")
    agent, assigned_at = assignment(d, lease, status)
    return Task(
        task_id=str(d.id),
        title=str(p.get("title", d.job_name)) if adhoc else d.job_name,
        description=str(p.get("description", "")) if adhoc else "",
        owner=str(p.get("owner") or d.owner or "system") if adhoc else d.owner or "system",
        required_capabilities=list(d.needs),
        status=status,
        assigned_agent=agent,
        priority=int(p.get("priority", LEVEL_PRIORITY.get(d.priority, 5)))
        if adhoc
        else LEVEL_PRIORITY.get(d.priority, 5),
        payload=dict(p.get("payload") or {}) if adhoc else dict(p),
        metadata=dict(p.get("metadata") or {}) if adhoc else {},
        source=str(p.get("source", "agent")) if adhoc else d.kind,
        parent_task_id=p.get("parent_task_id") if adhoc else None,
        result=d.result,
        error=d.last_error if status in ("FAILED", "TIMEOUT") or d.status == "queued" else None,
        progress=lease.progress if lease is not None else None,
        progress_message=lease.message if lease is not None else None,
        retry_count=max(0, d.attempt - 1),
        max_retries=d.max_attempts - 1,
        retry_eligible=bool(p.get("retry_eligible", True)) if adhoc else True,
        timeout_seconds=timeout,
        job=d.job_name,
        created_at=iso(d.created_at) or "",
        updated_at=iso(d.updated_at) or "",
        assigned_at=iso(assigned_at),
        completed_at=iso(d.updated_at) if final else None,
    )


def task_field(exc: ConfigError) -> ConfigError:
    """An error inside the dispatch payload a task rides in (``payload.payload.a``: the
    task's ``payload`` is a key of it) named as the task's own field (``payload.a``)."""
    field = exc.field or ""
    if not field.startswith("payload."):
        return exc
    return ConfigError(str(exc).removeprefix(f"{field}: "), field=field.removeprefix("payload."))
