"""Row models and job specs: frozen msgspec Structs shared by every layer.

Persisted structs follow msgspec's schema-evolution rules: a new field always gets a
default, so rows written by an older version still decode.

Durations (``Seconds``) accept a number of seconds or a string such as ``"500ms"``,
``"30s"``, ``"5m"``, ``"1.5h"``, ``"7d"``; use :func:`decode_spec` / :func:`to_builtins`
so the hooks are applied.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import msgspec

from store.errors import ConfigError

__all__ = [
    "DEAD_REASONS",
    "DISPATCH_STATES",
    "OUTCOMES",
    "PRIORITIES",
    "Dispatch",
    "EnqueueRequest",
    "JobRow",
    "JobSpec",
    "Outcome",
    "Priority",
    "RetryPolicy",
    "Run",
    "Seconds",
    "decode_spec",
    "parse_duration",
    "priority_rank",
    "to_builtins",
]

Priority = Literal["critical", "high", "normal", "low", "background"]
PRIORITIES: tuple[str, ...] = ("critical", "high", "normal", "low", "background")
_RANK = {p: i for i, p in enumerate(PRIORITIES)}

Outcome = Literal["ok", "error", "timeout", "crashed", "cancelled", "skipped"]
OUTCOMES: tuple[str, ...] = ("ok", "error", "timeout", "crashed", "cancelled", "skipped")

# queued: waiting in the ready queue (possibly with a future not_before)
# running: claimed, a run exists; done / cancelled / dead are final
DISPATCH_STATES: tuple[str, ...] = ("queued", "running", "done", "cancelled", "dead")
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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, *, field: str = "duration") -> float:
    """Seconds from a number or a ``<n>[ms|s|m|h|d]`` string; never negative."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a duration, got {value!r}", field=field)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ConfigError(
                f"invalid duration {value!r}; use a number of seconds"
                " or e.g. 500ms, 30s, 5m, 2h, 1d",
                field=field,
            )
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ConfigError(f"expected a duration, got {type(value).__name__}", field=field)
    if seconds < 0 or seconds != seconds:
        raise ConfigError(f"duration must be >= 0, got {value!r}", field=field)
    return seconds


class Seconds(float):
    """A duration in seconds; decodes from ``30``, ``"30s"``, ``"5m"``…"""

    __slots__ = ()


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Seconds:
        return Seconds(parse_duration(obj))
    raise NotImplementedError(f"cannot decode {type_!r}")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Seconds):
        return float(obj)
    raise NotImplementedError(f"cannot encode {type(obj)!r}")


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Per-dispatch attempts with exponential backoff: base · factor^(n-1), capped, jittered."""

    max_attempts: int = 3
    base: Seconds = Seconds(30.0)
    factor: float = 2.0
    max_delay: Seconds = Seconds(3600.0)
    jitter: float = 0.0  # fraction of the delay, 0..1, spread both ways


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
    every: Seconds | None = None
    misfire: Literal["skip", "run_once", "run_all"] = "skip"
    catch_up_window: Seconds = Seconds(3600.0)
    delete_after_run: bool = False
    # how a dispatch of this job runs
    priority: Priority = "normal"
    timeout: Seconds = Seconds(300.0)
    idle_timeout: Seconds | None = None
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    expires_in: Seconds | None = None
    overlap: Literal["skip", "queue", "allow", "replace"] = "allow"
    max_queued: int = 25
    pool: str | None = None
    delivery_guarantee: Literal["at-most-once", "at-least-once"] = "at-most-once"
    capabilities: list[str] = msgspec.field(default_factory=list)
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
    not_before: float | None = None  # wall-clock epoch seconds
    expires_at: float | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    kind: str = "enqueue"  # enqueue | schedule | retry | run_now | chain | spawn | replay
    slot: float | None = None  # the scheduled fire time this dispatch stands for
    parent_run_id: int | None = None


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


T = TypeVar("T")


def decode_spec(data: Any, type_: type[T], *, what: str = "job") -> T:
    """Decode builtins (from TOML / JSON / CLI) into ``type_``; errors name the field."""
    try:
        return msgspec.convert(data, type_, dec_hook=_dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid {what}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"invalid {what}: {exc}") from None


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj, enc_hook=_enc_hook)


def encode_json(obj: Any) -> bytes:
    return msgspec.json.encode(obj, enc_hook=_enc_hook)
