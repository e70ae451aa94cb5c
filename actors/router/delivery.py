"""Announce delivery: config, job settings, text, aliases, sinks, retry delay. Pure.

The router actor performs deliveries; everything it decides about them is here, as
plain functions (SEMANTICS.md §2.6, D9):

- A job's delivery settings are options: ``delivery`` = ``none`` / ``announce`` /
  ``announce-always`` (default ``announce`` when ``delivery_to`` is set, else
  ``none``), ``delivery_to`` (a target or an alias, ``@ops`` or ``ops``) and optionally
  ``delivery_channel``. Announce modes need ``delivery_to`` (as OCS's CHECK).
- Whether a run is announced: ``output.delivery_decision`` (announce = failures only,
  never event runs; announce-always = every run; watchdog never).
- The text: shell runs → ``output.shell_delivery_text`` verbatim (OCS delivers the shell
  override as is); other runs → the run's summary; failures get OCS's "⚠️ Job
  soft-failed (will retry | no retries configured): <name>" prefix.
- Aliases resolve to (channel, target); an unknown ``@name`` stays as given.
- The sink is the channel if it names a registered callback, a configured webhook or
  ``gateway``; otherwise the configured ``default_sink``.
- The delivery row: ``announce_delivery`` for a run outcome, ``explicit_delivery`` for
  an ``Announce`` (watchdog alerts, ``Runtime.deliver``).
- A failed send is retried after ``retry_base · 2^(n-1)`` seconds (capped at
  ``retry_max``) until ``max_attempts``; then the delivery is ``failed`` and stays
  visible. It never changes the run's outcome.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from shepherd.actors.executors.output import (
    DELIVERY_MODES,
    OutputLimits,
    delivery_decision,
    shell_delivery_text,
    soft_failed_text,
    validate_limits,
)
from shepherd.actors.router.delivery_config import DeliveryConfig, DeliveryTarget  # re-exported
from shepherd.store.alerts import validate_alert_option
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec, Run
from shepherd.store.ops import DeadLetterAlert, NewDelivery

if TYPE_CHECKING:  # annotations only: the config (DeliveryConfig) loads without the actors
    from shepherd.actors.messages import OutcomeEvent
    from shepherd.actors.router.messages import Announce

__all__ = [
    "DELIVERY_OPTIONS",
    "DeliveryConfig",
    "DeliveryTarget",
    "announce_delivery",
    "announce_text",
    "check_option_keys",
    "dead_letter_alert",
    "delivery_settings",
    "explicit_delivery",
    "pick_sink",
    "resolve_target",
    "retry_delay",
    "should_announce",
    "validate_delivery",
]

SinkKind = Literal["callback", "webhook", "gateway"]
ANNOUNCED_OUTCOMES = frozenset({"ok", "error", "timeout", "crashed"})


def delivery_settings(options: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(mode, delivery_to, delivery_channel) of a job's options, defaults applied."""
    to = options.get("delivery_to") or None
    channel = options.get("delivery_channel") or None
    mode = options.get("delivery") or ("announce" if to else "none")
    return str(mode), to if to is None else str(to), channel if channel is None else str(channel)


DELIVERY_OPTIONS = frozenset({"delivery", "delivery_to", "delivery_channel", "dead_letter_alert"})


def check_option_keys(spec: JobSpec, own: Collection[str]) -> None:
    """ConfigError naming the first key of ``spec.options`` that neither the executor
    (``own``) nor announce delivery reads: a misspelt option is never ignored."""
    known = DELIVERY_OPTIONS | set(own)
    for key in spec.options:
        if key not in known:
            raise ConfigError(
                f"unknown option for executor {spec.executor}; known: {', '.join(sorted(known))}",
                field=f"options.{key}",
            )


def validate_delivery(options: Mapping[str, Any]) -> None:
    """ConfigError naming the field for bad delivery options of a job spec."""
    validate_alert_option(options.get("dead_letter_alert"))
    raw = options.get("delivery")
    if raw is not None and raw not in DELIVERY_MODES:
        raise ConfigError(
            f"unknown delivery mode {raw!r}; expected one of {', '.join(DELIVERY_MODES)}",
            field="options.delivery",
        )
    for key in ("delivery_to", "delivery_channel"):
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError("must be a string", field=f"options.{key}")
    mode, to, _ = delivery_settings(options)
    if mode != "none" and not (to and to.strip()):
        raise ConfigError(
            f"delivery mode {mode!r} needs a target (an alias like '@ops' or a channel target)",
            field="options.delivery_to",
        )


def should_announce(job: JobSpec, outcome: str, deliver: bool) -> bool:
    """Whether a run of ``job`` that ended ``outcome`` gets an announce delivery."""
    if not deliver or outcome not in ANNOUNCED_OUTCOMES:
        return False
    mode, to, channel = delivery_settings(job.options)
    if mode not in DELIVERY_MODES or not (to or channel):
        return False
    return delivery_decision(mode, job.executor, outcome == "ok")


def resolve_target(
    to: str | None, channel: str | None, aliases: Mapping[str, DeliveryTarget]
) -> tuple[str | None, str | None]:
    """(channel, target): ``@name`` / ``name`` through the aliases; else as given."""
    if to:
        alias = aliases.get(to[1:] if to.startswith("@") else to)
        if alias is not None:
            return (channel or alias.channel or None), (alias.target or None)
    return channel, to


def pick_sink(
    channel: str | None,
    default_sink: str,
    callbacks: Collection[str],
    webhooks: Mapping[str, str],
) -> tuple[SinkKind, str] | None:
    """(kind, name) of the sink for ``channel``; None when nothing fits (yet)."""
    for name in (channel, default_sink):
        if not name:
            continue
        if name in callbacks:
            return "callback", name
        if name in webhooks:
            return "webhook", name
        if name == "gateway":
            return "gateway", name
    return None


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after ``attempts`` failed sends (1-based)."""
    return min(cap, base * 2.0 ** max(0, attempts - 1))


def _result_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, dict) and isinstance(result.get("summary"), str):
        return str(result["summary"])
    if isinstance(result, str):
        return result
    return msgspec.json.encode(result).decode()


def announce_text(job: JobSpec, outcome: str, run: Run, *, will_retry: bool) -> str:
    """The body of the announce delivery for ``run`` (blank: nothing to announce)."""
    ok = outcome == "ok"
    if job.executor == "shell":
        try:
            limits = validate_limits(job.options)
        except ConfigError:
            limits = OutputLimits()
        details = run.details or {}
        timed_out = run.timed_out or outcome == "timeout"
        derived = run.exit_code is not None or timed_out
        return shell_delivery_text(
            job.name, ok, run.stdout or "", run.stderr or "", run.exit_code, timed_out,
            None if ok or derived else run.error,
            stdout_path=details.get("stdout_path"),
            stdout_bytes=int(details.get("stdout_bytes") or 0),
            stderr_path=details.get("stderr_path"),
            stderr_bytes=int(details.get("stderr_bytes") or 0),
            excerpt_limit=limits.excerpt,
            timeout_ms=int(float(job.timeout) * 1000),
        )  # fmt: skip
    content = _result_text(run.result)
    if ok:
        return content
    content = content.strip() or run.error or outcome
    return soft_failed_text(job.name, content, will_retry)


def announce_delivery(
    job: JobSpec, event: OutcomeEvent, run: Run, cfg: DeliveryConfig, now: float
) -> NewDelivery | None:
    """The announce delivery of ``run`` of ``job`` that ended as ``event`` says, if any
    (``should_announce`` is asked first; a deferral is not a failure)."""
    if event.run_id is None or run.reason == "deferred":
        return None
    body = announce_text(job, event.outcome, run, will_retry=event.status == "queued")
    if not body.strip():
        return None
    opts = job.options
    channel, target = resolve_target(
        opts.get("delivery_to"), opts.get("delivery_channel"), cfg.aliases
    )
    return NewDelivery(
        kind="announce", body=body, channel=channel, target=target,
        max_attempts=cfg.max_attempts, next_attempt_at=now, job_id=event.job_id,
        job_name=job.name, run_id=event.run_id, dispatch_id=event.dispatch_id,
        outcome=event.outcome,
    )  # fmt: skip


def explicit_delivery(msg: Announce, cfg: DeliveryConfig, now: float) -> NewDelivery:
    """The delivery row an ``Announce`` asks for, its target resolved through aliases."""
    channel, target = resolve_target(msg.to, msg.channel, cfg.aliases)
    return NewDelivery(
        kind=msg.kind, body=msg.body, channel=channel, target=target,
        max_attempts=cfg.max_attempts, next_attempt_at=now, job_name=msg.job,
        run_id=msg.run_id, dispatch_id=msg.dispatch_id, outcome=msg.outcome,
    )  # fmt: skip


def dead_letter_alert(cfg: DeliveryConfig) -> DeadLetterAlert:
    """What the ops that dead-letter a dispatch need to queue its alert (``store.alerts``):
    the global target, the aliases, the attempt budget of a delivery."""
    return DeadLetterAlert(
        to=cfg.dead_letter_to or None,
        channel=cfg.dead_letter_channel or None,
        aliases={k: (a.channel or None, a.target or None) for k, a in cfg.aliases.items()},
        max_attempts=cfg.max_attempts,
    )
