"""What each built-in executor accepts in a job spec: its option table and its check.

``ShellExecutor.validate`` is ``check_shell``, ``AgentExecutor.validate`` is
``check_agent(gateway, spec)`` and so on (``PythonExecutor`` adds the checks against
its registry of targets). They live here, apart from the executors' runtime modules
(subprocesses, HTTP, the event loop), so that checking a config's ``[[jobs]]``, as
every CLI command does, imports msgspec and the standard library only. Every error is
a ``ConfigError`` naming the field (``options.cwd``, ``payload.message``…). What a
shell or watchdog job hands the OS (its command, its directory) must be text the OS
can take (``store.bounds.check_os_text``: no NUL, UTF-8), or every run of it would fail
to start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shepherd.actors.executors import prompt
from shepherd.actors.executors.gateway_config import require_gateway
from shepherd.actors.executors.output import OUTPUT_OPTIONS, validate_limits
from shepherd.actors.router.delivery import check_option_keys
from shepherd.store.bounds import Range, check_os_text, check_value
from shepherd.store.errors import ConfigError

if TYPE_CHECKING:
    from shepherd.actors.executors.gateway_config import GatewayConfig
    from shepherd.store.models import JobSpec

__all__ = [
    "AGENT_OPTIONS",
    "EVENT_MODES",
    "EVENT_OPTIONS",
    "SHELL_OPTIONS",
    "TIMEOUT_MIN",
    "WATCHDOG_OPTIONS",
    "SpecCheck",
    "Validator",
    "check_agent",
    "check_event",
    "check_external",
    "check_python",
    "check_shell",
    "check_watchdog",
    "event_text",
    "parse_started_at",
    "watchdog_command",
]

#: the options a shell job may set (announce delivery's come on top)
SHELL_OPTIONS = OUTPUT_OPTIONS | {"cwd"}
#: the options an agent job may set (the prompt's and announce delivery's on top)
AGENT_OPTIONS = frozenset({"model", "session_key", "auth_profile", "stream"}) | prompt.OPTIONS
EVENT_MODES = ("now", "next-heartbeat")
EVENT_OPTIONS = frozenset({"mode"})  # announce delivery's come on top
#: the options a watchdog job may set (announce delivery's come on top)
WATCHDOG_OPTIONS = frozenset(
    {
        "check_cmd",
        "timeout_min",
        "self_destruct",
        "alert_to",
        "alert_channel",
        "label",
        "started_at",
    }
)
TIMEOUT_MIN = Range(1, 43_200)  # options.timeout_min: 1 minute to 30 days


class Validator(Protocol):
    """What ``runtime.jobs.validate_job`` asks of an executor: an ``Executor`` is one."""

    def validate(self, spec: JobSpec) -> None: ...


class SpecCheck:
    """An executor as validation sees it, without the executor: its name and its check."""

    __slots__ = ("_check", "name")

    def __init__(self, name: str, check: Callable[[JobSpec], None]) -> None:
        self.name = name
        self._check = check

    def validate(self, spec: JobSpec) -> None:
        self._check(spec)

    def __repr__(self) -> str:
        return f"<SpecCheck {self.name}>"


def check_shell(spec: JobSpec) -> None:
    if not spec.target.strip():
        raise ConfigError("a shell job needs a command in target", field="target")
    check_os_text(spec.target, field="target")
    check_option_keys(spec, SHELL_OPTIONS)
    validate_limits(spec.options)
    cwd = spec.options.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.strip()):
        raise ConfigError("must be a non-empty string (a directory)", field="options.cwd")
    if cwd is not None:
        check_os_text(cwd, field="options.cwd")


def check_python(spec: JobSpec) -> None:
    """What a python job needs wherever it runs; whether its target exists and its
    payload fits is the registry's check (``PythonExecutor.validate``)."""
    if not (spec.target or spec.name):
        raise ConfigError("a python job needs a target", field="target")
    # no options of its own (announce delivery's only): job data goes in ``payload``
    check_option_keys(spec, ())


def check_external(spec: JobSpec) -> None:
    # no options of its own (announce delivery's only): the worker gets ``payload``
    check_option_keys(spec, ())


def check_agent(gateway: GatewayConfig | None, spec: JobSpec) -> None:
    require_gateway(gateway, spec)
    message = spec.payload.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ConfigError("an agent job needs a message to send", field="payload.message")
    check_option_keys(spec, AGENT_OPTIONS)
    for key in ("model", "session_key", "auth_profile"):
        value = spec.options.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError("must be a non-empty string", field=f"options.{key}")
    if not isinstance(spec.options.get("stream", True), bool):
        raise ConfigError("must be true or false", field="options.stream")
    prompt.validate_options(spec.options)


def event_text(job: JobSpec, payload: dict[str, Any]) -> str:
    """The text a system event sends: ``payload.message``, else the job's target."""
    message = payload.get("message")
    if isinstance(message, str) and message.strip():
        return message
    return job.target


def check_event(gateway: GatewayConfig | None, spec: JobSpec) -> None:
    require_gateway(gateway, spec)
    if not event_text(spec, spec.payload).strip():
        raise ConfigError("a system event needs a text", field="payload.message")
    check_option_keys(spec, EVENT_OPTIONS)
    mode = spec.options.get("mode", "now")
    if mode not in EVENT_MODES:
        raise ConfigError(
            f"unknown event mode {mode!r}; expected one of {', '.join(EVENT_MODES)}",
            field="options.mode",
        )


def watchdog_command(spec: JobSpec) -> str:
    """The check a watchdog runs: ``options.check_cmd``, else the job's target."""
    cmd = spec.options.get("check_cmd")
    return cmd if isinstance(cmd, str) and cmd.strip() else spec.target


def parse_started_at(value: object, *, field: str = "options.started_at") -> float:
    """Epoch seconds from a number or an ISO 8601 string (naive = UTC)."""
    if isinstance(value, bool):
        raise ConfigError(f"expected epoch seconds or ISO 8601, got {value!r}", field=field)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"invalid ISO 8601 time {value!r}", field=field) from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    raise ConfigError(f"expected epoch seconds or ISO 8601, got {value!r}", field=field)


def check_watchdog(spec: JobSpec) -> None:
    if not watchdog_command(spec).strip():
        raise ConfigError(
            "a watchdog job needs a check command (options.check_cmd or target)",
            field="options.check_cmd",
        )
    check_option_keys(spec, WATCHDOG_OPTIONS)
    opts = spec.options
    cmd = opts.get("check_cmd")
    if cmd is not None and not isinstance(cmd, str):
        raise ConfigError("must be a string (a shell command)", field="options.check_cmd")
    if cmd is not None:
        check_os_text(cmd, field="options.check_cmd")
    if cmd is None or not cmd.strip():  # the target is the command it runs
        check_os_text(spec.target, field="target")
    if opts.get("timeout_min") is not None:
        check_value(opts["timeout_min"], TIMEOUT_MIN, field="options.timeout_min", integer=True)
    if not isinstance(opts.get("self_destruct", True), bool):
        raise ConfigError("must be true or false", field="options.self_destruct")
    for key in ("alert_to", "alert_channel", "label"):
        value = opts.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError("must be a non-empty string", field=f"options.{key}")
    if opts.get("started_at") is not None:
        parse_started_at(opts["started_at"])
