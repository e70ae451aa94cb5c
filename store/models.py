"""Row models and job specs: frozen msgspec Structs shared by every layer.

Every stored shape is declared here (hence its length) or in ``store.records``
(messages, deliveries, workflows, agents, pauses), re-exported here, so a reader finds
any row, spec or request from one import.

Persisted structs follow msgspec's schema-evolution rules: a new field always gets a
default, so rows written by an older version still decode.

Durations (``Seconds``) accept a number of seconds or a string such as ``"500ms"``,
``"30s"``, ``"5m"``, ``"1.5h"``, ``"7d"``; use :func:`decode_spec` / :func:`to_builtins`
so the hooks are applied.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeGuard, TypeVar, get_args

import msgspec

from shepherd.store.bounds import DAY, MAX_EPOCH, Range, bounds_at, check_bounds, check_value
from shepherd.store.durations import Seconds, parse_duration
from shepherd.store.errors import ConfigError
from shepherd.store.records import (  # re-exported: one place to import rows from
    AGENT_STATUSES,
    APPROVAL_STATES,
    DELIVERY_STATES,
    GROUP_STATES,
    MAX_CONCURRENT,
    MEMBER_STATES,
    MESSAGE_KINDS,
    MESSAGE_STATES,
    PAUSE_SCOPES,
    Agent,
    AgentPolicy,
    AgentSpec,
    AgentStatus,
    Approval,
    Delivery,
    GroupMember,
    Message,
    Pause,
    PauseScope,
    TaskGroup,
    check_agent_id,
    normalize_capabilities,
)

__all__ = [
    "AGENT_STATUSES",
    "APPROVAL_STATES",
    "ATTEMPTS",
    "DEAD_REASONS",
    "DELAY",
    "DELIVERY_STATES",
    "DISPATCH_STATES",
    "EXPIRES_IN",
    "GROUP_STATES",
    "MAX_CONCURRENT",
    "MEMBER_STATES",
    "MESSAGE_KINDS",
    "MESSAGE_STATES",
    "OUTCOMES",
    "PAUSE_SCOPES",
    "PRIORITIES",
    "Agent",
    "AgentPolicy",
    "AgentSpec",
    "AgentStatus",
    "Approval",
    "ApprovalPolicy",
    "Attempts",
    "Delivery",
    "Dispatch",
    "EnqueueRequest",
    "GroupMember",
    "JobRow",
    "JobSpec",
    "Message",
    "Outcome",
    "Pause",
    "PauseScope",
    "Priority",
    "RetryPolicy",
    "Run",
    "Seconds",
    "SettleReason",
    "SkipReason",
    "SlotSkip",
    "TaskGroup",
    "check_agent_id",
    "decode_spec",
    "is_settle_reason",
    "is_skip_reason",
    "normalize_capabilities",
    "parse_duration",
    "priority_rank",
    "to_builtins",
]

Priority = Literal["critical", "high", "normal", "low", "background"]
PRIORITIES: tuple[str, ...] = ("critical", "high", "normal", "low", "background")
_RANK = {p: i for i, p in enumerate(PRIORITIES)}

Outcome = Literal["ok", "error", "timeout", "crashed", "cancelled", "skipped"]
OUTCOMES: tuple[str, ...] = ("ok", "error", "timeout", "crashed", "cancelled", "skipped")

# Why a slot or a dispatch did not run: the scheduler's slots that never became a
# dispatch (``SlotSkip``), then admission's skips and a claim whose key was taken.
SlotSkip = Literal["missed", "backoff"]
SkipReason = Literal[SlotSkip, "disabled", "skipped-overlap", "queue-full", "idempotency-skip"]
# Why a queued dispatch ended without running (a skip, or dead / cancelled by admission).
SettleReason = Literal[SkipReason, "expired", "job removed"]
_SKIP_REASONS = frozenset(get_args(SkipReason))
_SETTLE_REASONS = frozenset(get_args(SettleReason))


def is_skip_reason(reason: str | None) -> TypeGuard[SkipReason]:
    return reason in _SKIP_REASONS


def is_settle_reason(reason: str | None) -> TypeGuard[SettleReason]:
    return reason in _SETTLE_REASONS


# queued: waiting in the ready queue (possibly with a future not_before)
# running: claimed, a run exists; done / cancelled / dead are final
# awaiting_approval: held by its job's approval gate until approved (then queued)
DISPATCH_STATES: tuple[str, ...] = (
    "queued", "awaiting_approval", "running", "done", "cancelled", "dead",
)  # fmt: skip
DEAD_REASONS: tuple[str, ...] = ("attempts", "expired", "discarded", "rejected")


def priority_rank(priority: str) -> int:
    """0 for critical … 4 for background; raises ConfigError naming ``priority``."""
    try:
        return _RANK[priority]
    except KeyError:
        raise ConfigError(
            f"unknown priority {priority!r}; expected one of {', '.join(PRIORITIES)}",
            field="priority",
        ) from None


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Seconds:
        return Seconds(parse_duration(obj, field=""))  # decode_spec adds the field path
    raise NotImplementedError(f"cannot decode {type_!r}")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Seconds):
        return float(obj)
    raise NotImplementedError(f"cannot encode {type(obj)!r}")


# Bounds of the numeric fields (store.bounds): the README's Jobs table shows them.
ATTEMPTS = Range(1, 1000)
Attempts = Annotated[int, ATTEMPTS]
_RUN_TIME = Range(0.001, 30 * DAY, "s")  # timeout, idle_timeout
_DELAY = Range(0, 30 * DAY, "s")  # retry base and cap
_EPOCH = Range(0, MAX_EPOCH)
DELAY = Range(0, 3650 * DAY, "s")  # an enqueue's delay
EXPIRES_IN = Range(0.001, 3650 * DAY, "s")  # a job's or an enqueue's expires_in


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Per-dispatch attempts with exponential backoff: base · factor^(n-1), capped, jittered."""

    max_attempts: Attempts = 3
    base: Annotated[Seconds, _DELAY] = Seconds(30.0)
    factor: Annotated[float, Range(1, 100)] = 2.0
    max_delay: Annotated[Seconds, _DELAY] = Seconds(3600.0)
    jitter: Annotated[float, Range(0, 1)] = 0.0  # fraction of the delay, spread both ways


class ApprovalPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A human gate before a dispatch's first attempt (README "Approvals", SEMANTICS D13).

    ``sources``: the dispatch kinds gated (None: every kind but an operator's
    ``run_now``; OCS gated only ``chain``)."""

    required: bool = True
    timeout: Annotated[Seconds, Range(1, 30 * DAY, "s")] = Seconds(3600.0)
    on_timeout: Literal["approve", "reject"] = "reject"
    max_pending: Annotated[int, Range(1, 100_000)] = 10
    sources: list[str] | None = None


class JobSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What to run and how. Validated by ``runtime.jobs.validate_job`` before it is stored."""

    name: str
    executor: str = "python"  # python | shell | agent | event | watchdog
    target: str = ""  # python: registered callable; shell: command; agent: agent id
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    enabled: bool = True
    description: str = ""
    # schedule (at most one kind; none = event-driven only)
    cron: str | None = None
    tz: str = "UTC"
    at: str | None = None  # ISO 8601 instant, or "in 10m"
    every: Annotated[Seconds, Range(0.001, 366 * DAY, "s")] | None = None
    misfire: Literal["skip", "run_once", "run_all"] = "skip"
    catch_up_window: Annotated[Seconds, Range(0, 366 * DAY, "s")] = Seconds(3600.0)
    delete_after_run: bool = False
    # how a dispatch of this job runs
    priority: Priority = "normal"
    timeout: Annotated[Seconds, _RUN_TIME] = Seconds(300.0)
    idle_timeout: Annotated[Seconds, _RUN_TIME] | None = None
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    expires_in: Annotated[Seconds, EXPIRES_IN] | None = None
    overlap: Literal["skip", "queue", "allow", "replace"] = "allow"
    max_queued: Annotated[int, Range(0, 100_000)] = 25
    pool: str | None = None
    delivery_guarantee: Literal["at-most-once", "at-least-once"] = "at-most-once"
    capabilities: list[str] = msgspec.field(default_factory=list)
    # chains: a child fires when a run of ``parent`` ends as ``trigger_on`` says
    parent: str | None = None  # the parent job's name
    trigger_on: Literal["success", "failure", "complete"] | None = None
    trigger_condition: str | None = None  # "contains:TEXT" | "regex:PATTERN"
    trigger_delay: Annotated[Seconds, _DELAY] = Seconds(0.0)
    max_fanout: Annotated[int, Range(0, 1000)] = 25  # children one run may fire
    # a human gate before the first attempt
    approval: ApprovalPolicy | None = None
    # a token bucket on this job's admissions: "10/s", "100/m"; burst defaults to the rate
    rate: str | None = None
    burst: Annotated[int, Range(1, 1_000_000)] | None = None
    # executor-specific options (shell limits, agent model, watchdog rules, delivery…)
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class JobRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored job: the spec plus the scheduler's bookkeeping."""

    id: int
    spec: JobSpec
    next_run_at: float | None = None
    anchor: float | None = None  # grid origin of an ``every`` schedule
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_errors: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name


class EnqueueRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One dispatch to create. ``None`` fields fall back to the job's spec."""

    job: str
    payload: dict[str, Any] | None = None
    priority: Priority | None = None
    not_before: Annotated[float, _EPOCH] | None = None  # wall-clock epoch seconds
    expires_at: Annotated[float, _EPOCH] | None = None
    max_attempts: Attempts | None = None
    idempotency_key: str | None = None
    kind: str = "enqueue"  # enqueue | schedule | retry | run_now | chain | spawn | replay
    slot: float | None = None  # the scheduled fire time this dispatch stands for
    parent_run_id: int | None = None
    # assignment (README "Agents"): capabilities on top of the job's, the owner filter
    capabilities: list[str] | None = None
    owner: str | None = None


class Dispatch(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    seq: int
    job_id: int
    job_name: str
    kind: str
    status: str
    priority: str
    not_before: float
    expires_at: float | None
    attempt: int  # attempts started so far
    max_attempts: int
    payload: dict[str, Any] | None
    idempotency_key: str | None
    slot: float | None
    parent_run_id: int | None
    created_at: float
    updated_at: float
    outcome: str | None = None
    dead_reason: str | None = None
    last_error: str | None = None
    current_run_id: int | None = None
    result: Any = None
    needs: list[str] = msgspec.field(default_factory=list)  # its own capabilities
    owner: str | None = None
    agent: str | None = None  # the agent its current (or last) run was assigned to
    wait_reason: str | None = None  # why it waits ("unmatched: needs [gpu]")
    assigned_at: float | None = None  # when ``agent`` got it (assigned, or its worker claimed it)


class Run(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    dispatch_id: int | None
    job_id: int
    job_name: str
    attempt: int
    status: str  # running or an Outcome
    started_at: float
    finished_at: float | None = None
    heartbeat_at: float | None = None
    error: str | None = None
    result: Any = None
    idempotency_key: str | None = None
    reason: str | None = None  # why a slot was skipped / a run was ended
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stdout: str | None = None
    stderr: str | None = None
    details: dict[str, Any] | None = None
    pgid: int | None = None  # the process group the run started (shell, watchdog)
    process: str | None = None  # what crash recovery found of it: gone | killed | alive
    agent: str | None = None  # the agent assignment chose for this run


T = TypeVar("T")


_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def decode_spec(data: Any, type_: type[T], *, what: str = "job") -> T:
    """Decode builtins (from TOML / JSON / CLI) into ``type_`` and check the bounds of
    its numeric fields; a ConfigError names the field (``retry.max_attempts``)."""
    try:
        value = msgspec.convert(data, type_, dec_hook=_dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT_PATH.search(text)
        cause = exc.__cause__
        if isinstance(cause, ConfigError) and cause.field:  # from a __post_init__
            raise ConfigError(_message(cause), field=cause.field) from None
        if m and m.group(1):
            if isinstance(cause, ConfigError):  # a duration the hook refused
                _check_own_bounds(data, type_, m.group(1))
            inner = _message(cause) if isinstance(cause, ConfigError) else text[: m.start()]
            raise ConfigError(inner, field=m.group(1)) from None
        raise ConfigError(f"invalid {what}: {text}") from None
    except ConfigError as exc:
        raise ConfigError(f"invalid {what}: {exc}") from None
    if isinstance(value, msgspec.Struct):
        check_bounds(value)
    return value


def _check_own_bounds(data: Any, type_: type, path: str) -> None:
    """A number the duration hook refused (``"timeout": -1``: no duration is negative)
    refused instead by the bounds of its field, so the error says the real bound
    (``timeout: must be >= 1ms``), as for a number past the other end."""
    value = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    bounds = bounds_at(type_, path) if isinstance(type_, type) else None
    if bounds is not None and isinstance(value, int | float) and not isinstance(value, bool):
        check_value(value, bounds, field=path)


def _message(exc: ConfigError) -> str:
    text = str(exc)
    return text.removeprefix(f"{exc.field}: ") if exc.field else text


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj, enc_hook=_enc_hook)


def encode_json(obj: Any) -> bytes:
    return msgspec.json.encode(obj, enc_hook=_enc_hook)
