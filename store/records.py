"""The records of messages and deliveries, workflows (approvals, task groups), the
agents registry and pauses: frozen msgspec Structs, re-exported by ``store.models``
(where the rows of jobs, dispatches and runs live), so either import works."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from shepherd.store.bounds import Range
from shepherd.store.durations import Seconds
from shepherd.store.errors import ConfigError

__all__ = [
    "AGENT_STATUSES",
    "APPROVAL_STATES",
    "DELIVERY_STATES",
    "GROUP_STATES",
    "MAX_CONCURRENT",
    "MEMBER_STATES",
    "MESSAGE_KINDS",
    "MESSAGE_STATES",
    "PAUSE_SCOPES",
    "Agent",
    "AgentPolicy",
    "AgentSpec",
    "AgentStatus",
    "Approval",
    "Delivery",
    "GroupMember",
    "Message",
    "Pause",
    "PauseScope",
    "TaskGroup",
    "check_agent_id",
    "normalize_capabilities",
]


# -- messages and deliveries (owned by the message router) ---------------------------

MESSAGE_KINDS: tuple[str, ...] = (
    "text", "task", "result", "status", "system", "spawn",
    "decision", "constraint", "fact", "preference",
)  # fmt: skip
MESSAGE_STATES: tuple[str, ...] = ("pending", "delivered", "read", "expired", "failed")
DELIVERY_STATES: tuple[str, ...] = ("pending", "sent", "failed")


class Message(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    from_agent: str
    to_agent: str
    kind: str
    subject: str | None
    body: str
    priority: int  # 0 normal, 1 high, 2 urgent
    status: str
    created_at: float
    metadata: dict[str, Any] | None = None
    channel: str | None = None
    delivery_to: str | None = None
    expires_at: float | None = None
    delivered_at: float | None = None
    read_at: float | None = None
    job_id: int | None = None
    run_id: int | None = None
    owner: str | None = None
    reply_to: int | None = None
    last_error: str | None = None  # why a spawn message failed
    ack_at: float | None = None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str  # announce (job delivery) | alert (watchdog) | api (Runtime.deliver) | dead_letter
    status: str  # pending | sent | failed
    body: str
    channel: str | None
    target: str | None
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    next_attempt_at: float | None = None
    last_error: str | None = None
    sink: str | None = None  # the sink that took (or last refused) it
    sent_at: float | None = None
    job_id: int | None = None
    job_name: str | None = None
    run_id: int | None = None
    dispatch_id: int | None = None
    outcome: str | None = None


# -- chains and approvals (workflows) --------------------------------------------------

# pending: waiting for a human (or its deadline); the others are final
APPROVAL_STATES: tuple[str, ...] = ("pending", "approved", "rejected", "timed_out")


class Approval(msgspec.Struct, frozen=True, kw_only=True):
    """One approval request of a gated dispatch (README "Approvals")."""

    id: int
    dispatch_id: int
    job_id: int
    job_name: str
    status: str  # APPROVAL_STATES
    on_timeout: str  # approve | reject
    requested_at: float
    deadline: float
    resolved_at: float | None = None
    resolved_by: str | None = None  # who approved / rejected; "timeout"
    reason: str | None = None
    delivery_id: int | None = None  # the request's delivery row
    kind: str = ""  # the dispatch's kind


# @@workflows-chains-approvals@@

# -- spawn messages and task groups (workflows) ----------------------------------------
# A task group (OCS's task tracker, a dead-man switch): members report started /
# completed / failed and heartbeat; one silent past its window is ``dead``. Once every
# member is final the group ends (``completed`` if all completed, else ``failed``) and
# its summary is delivered once (store/ops/groups.py has the rules).
GROUP_STATES: tuple[str, ...] = ("open", "completed", "failed")
MEMBER_STATES: tuple[str, ...] = ("pending", "started", "completed", "failed", "dead")


class GroupMember(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    status: str  # pending | started | completed | failed | dead
    started_at: float | None = None
    finished_at: float | None = None
    last_heartbeat: float | None = None
    message: str | None = None
    error: str | None = None


class TaskGroup(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    status: str  # open | completed | failed
    timeout: float  # seconds from created_at before a silent member may be dead
    heartbeat_window: float  # a heartbeat this recent keeps a member alive
    created_at: float
    updated_at: float
    members: list[GroupMember] = msgspec.field(default_factory=list)
    created_by: str | None = None
    delivery_to: str | None = None  # as given (an alias or a target)
    delivery_channel: str | None = None
    completed_at: float | None = None
    summary: str | None = None
    delivery_id: int | None = None  # the summary's delivery (at most one)


# @@workflows-spawn-groups@@

# -- agents registry and assignment ----------------------------------------------------

AGENT_STATUSES: tuple[str, ...] = ("ready", "sleeping", "busy", "degraded", "draining", "offline")
AgentStatus = Literal["ready", "sleeping", "busy", "degraded", "draining", "offline"]
AgentPolicy = Literal["always-on", "on-demand"]
MAX_CONCURRENT = Range(1, 10_000)
_CAPABILITY = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


def normalize_capabilities(
    values: Any, *, field: str = "capabilities", wildcard: bool = True
) -> list[str]:
    """Capability names lower-cased, sorted, without duplicates; ``*`` (an agent that
    can do anything; not a requirement: ``wildcard=False``) is kept as is. A
    ConfigError names ``field`` for an empty or malformed name
    (``[a-z0-9][a-z0-9_.:-]{0,63}``) or a value that is not a list."""
    if isinstance(values, str):
        values = values.split(",")
    if not isinstance(values, list | tuple | set | frozenset):
        raise ConfigError("expected a list of capability names", field=field)
    out: set[str] = set()
    for i, raw in enumerate(values):
        if not isinstance(raw, str):
            raise ConfigError(f"expected a capability name, got {raw!r}", field=f"{field}[{i}]")
        name = raw.strip().lower()
        if name == "*" and not wildcard:
            raise ConfigError("'*' is an agent's capability, not a requirement", field=field)
        if name != "*" and not _CAPABILITY.match(name):
            why = "is empty" if not name else f"{raw!r} is not a capability name"
            raise ConfigError(
                f"{why}; use letters, digits and _ . : - (up to 64, starting with a"
                " letter or digit)",
                field=f"{field}[{i}]",
            )
        out.add(name)
    return sorted(out)


def check_agent_id(value: Any, *, field: str = "id") -> str:
    if not isinstance(value, str) or not _AGENT_ID.match(value):
        raise ConfigError(
            f"{value!r} is not an agent id; use letters, digits and _ . : @ - (up to 128)",
            field=field,
        )
    return value


class AgentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An agent as configured (``[[agents.agent]]``) or added (``agents add``)."""

    id: str
    name: str = ""  # default: the id
    capabilities: list[str] = msgspec.field(default_factory=list)
    policy: AgentPolicy = "always-on"
    max_concurrent: Annotated[int, MAX_CONCURRENT] = 3  # Dispatch's default
    status: Literal["ready", "sleeping"] = "ready"  # the status it starts in
    delivery: str | None = None  # delivery target ("telegram:123", "@ops"); None: none
    model: str | None = None  # the model the agent executor asks for on its turns
    wake: str | None = None  # a shell command or an http(s) URL that wakes it
    wake_timeout: Annotated[Seconds, Range(0.001, 3600, "s")] = Seconds(30.0)

    def __post_init__(self) -> None:
        check_agent_id(self.id)
        msgspec.structs.force_setattr(
            self, "capabilities", normalize_capabilities(self.capabilities)
        )


class Agent(msgspec.Struct, frozen=True, kw_only=True):
    """A registered agent (the ``agents`` table). ``rev`` grows with every write, so
    a reader asks for what changed since the newest it saw."""

    id: str
    name: str
    capabilities: list[str]
    status: AgentStatus
    policy: AgentPolicy
    max_concurrent: int
    last_seen: float | None = None
    delivery: str | None = None
    model: str | None = None
    wake: str | None = None
    wake_timeout: float = 30.0
    source: str = "api"  # api | config | gateway
    failures: int = 0  # consecutive failed runs
    rev: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    removed: bool = False  # a tombstone: the agent was removed (readers since a rev)
    running: int = 0  # its runs in flight (the registry listing counts them)


# @@agents-registry@@

# -- rate limits and pauses ------------------------------------------------------------
# A pause holds the queued dispatches of its scope (the whole runtime, a job, a pool,
# an executor or an agent) until it is resumed; running runs are not touched. Stored
# in ``pauses`` so that it survives a restart (store/ops/controls.py).
PAUSE_SCOPES: tuple[str, ...] = ("runtime", "job", "pool", "executor", "agent")
PauseScope = Literal["runtime", "job", "pool", "executor", "agent"]


class Pause(msgspec.Struct, frozen=True, kw_only=True):
    scope: PauseScope
    name: str  # "" for the runtime
    paused_at: float
    by: str = ""  # who paused it (the API, the CLI: its origin)
    reason: str | None = None

    @property
    def key(self) -> str:
        """``runtime`` or ``<scope>:<name>`` (``job:nightly``)."""
        return "runtime" if self.scope == "runtime" else f"{self.scope}:{self.name}"


# @@controls-rates-pauses@@
