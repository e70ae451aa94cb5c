"""Dead-letter alerts: who hears of a dead letter and what the alert says. Pure.

The engine calls these inside the transaction that dead-letters a dispatch, so the
alert is a delivery row committed with the dead letter or not at all: a crash cannot
lose it or send it twice (its sends are then the router's, at least once, retried).

Who: the job's ``options.dead_letter_alert`` — ``{"to": "@ops", "channel": "..."}``, or
``false`` for none — else the global ``[delivery] dead_letter_to`` /
``dead_letter_channel`` (``DeadLetterAlert``); ``@name`` / ``name`` resolves through
``[delivery] aliases``. Nothing configured: no alert.

What (the Redis orchestrator's DLQ alert): the job, the target (the agent for an agent
job), an excerpt of the task (≤ 200 characters of the payload's ``message`` / ``task``
/ ``prompt`` / ``text``, else of the payload as JSON; long base64 runs replaced by
``[base64]``), who dispatched it, the attempts, the last error and the commands to
inspect it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from shepherd.store.errors import ConfigError
from shepherd.store.ops import DeadLetterAlert

__all__ = [
    "DEAD_LETTER_COLUMNS",
    "EXCERPT",
    "alert_route",
    "alert_row",
    "alert_text",
    "excerpt",
    "validate_alert_option",
]

EXCERPT = 200  # characters of the task in an alert
_TASK_KEYS = ("message", "task", "prompt", "text")
_KEYS = frozenset({"to", "channel"})
_BASE64 = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")  # inline file contents, images


def validate_alert_option(value: Any) -> None:
    """ConfigError naming the field for a bad ``options.dead_letter_alert``."""
    field = "options.dead_letter_alert"
    if value is None or value is False:
        return
    if not isinstance(value, dict):
        raise ConfigError("expected a table {to, channel} or false", field=field)
    for key, v in value.items():
        if key not in _KEYS:
            raise ConfigError("unknown key; known: channel, to", field=f"{field}.{key}")
        if not isinstance(v, str):
            raise ConfigError("must be a string", field=f"{field}.{key}")
    if not (value.get("to") or value.get("channel")):
        raise ConfigError("needs `to` (an alias like '@ops' or a target)", field=f"{field}.to")


def alert_route(
    options: Mapping[str, Any], alert: DeadLetterAlert | None
) -> tuple[str | None, str | None] | None:
    """(channel, target) of the alert for a dead letter of a job with ``options``; None
    when no alert is configured for it."""
    own = options.get("dead_letter_alert")
    if own is False:
        return None
    if isinstance(own, dict) and (own.get("to") or own.get("channel")):
        to, channel = own.get("to") or None, own.get("channel") or None
    elif alert is not None and (alert.to or alert.channel):
        to, channel = alert.to, alert.channel
    else:
        return None
    if to and alert is not None:
        known = alert.aliases.get(to[1:] if to.startswith("@") else to)
        if known is not None:
            return channel or known[0], known[1]
    return channel, to


def _base64(m: re.Match[str]) -> str:
    run = m[0]
    mixed = any(c.isdigit() for c in run) and run.lower() != run and run.upper() != run
    return "[base64]" if mixed else run


def excerpt(payload: Any, limit: int = EXCERPT) -> str:
    """At most ``limit`` characters of the task a payload carries."""
    text: str
    if isinstance(payload, dict):
        found = next((payload[k] for k in _TASK_KEYS if isinstance(payload.get(k), str)), None)
        text = found if found is not None else msgspec.json.encode(payload).decode()
    elif isinstance(payload, str):
        text = payload
    elif payload is None:
        text = ""
    else:
        text = msgspec.json.encode(payload).decode()
    text = " ".join(_BASE64.sub(_base64, text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def alert_text(
    *,
    job: str,
    target: str,
    executor: str,
    payload: Any,
    attempts: int,
    max_attempts: int,
    reason: str | None,
    error: str | None,
    dispatch_id: int,
    run_id: int | None,
    dispatched_by: str = "",
) -> str:
    """The body of a dead-letter alert."""
    who = "Agent" if executor == "agent" else "Target"
    lines = [
        f"🚨 Dead letter: job {job} (dispatch {dispatch_id})",
        f"{who}: {target}",
        f'Task: "{excerpt(payload)}"',
        *([f"Dispatched by: {dispatched_by}"] if dispatched_by else []),
        f"Attempts: {attempts}/{max_attempts}" + (f" ({reason})" if reason else ""),
        f'Last error: "{excerpt(error or reason or "", 500)}"',
        f"Inspect: shepherd dlq list --job {job}"
        + (f" · shepherd runs show {run_id}" if run_id else "")
        + f" · retry: shepherd dlq retry {dispatch_id}",
    ]
    return "\n".join(lines)


# the columns both engines select for ``alert_row``: the dead dispatch, its job's spec,
# its last run
DEAD_LETTER_COLUMNS = (
    "d.job_id, d.job_name, d.payload, d.attempt, d.max_attempts, d.dead_reason,"
    " d.last_error, d.outcome, j.spec, d.kind,"
    " (SELECT MAX(r.id) FROM runs r WHERE r.dispatch_id = d.id)"
)


def alert_row(row: Any, dispatch_id: int, alert: DeadLetterAlert | None) -> tuple[Any, ...] | None:
    """The delivery of a dead letter's alert, from its ``DEAD_LETTER_COLUMNS`` row:
    ``(channel, target, body, job_id, job, run_id, dispatch_id, outcome,
    max_attempts)``, or None when nobody is to hear of it."""
    job_id, job, payload, attempt, max_attempts, reason, error, outcome, spec, kind, run_id = row
    decoded = msgspec.json.decode(spec) if spec else {}
    route = alert_route(decoded.get("options") or {}, alert)
    if route is None:
        return None
    channel, target = route
    body = alert_text(
        job=job,
        target=str(decoded.get("target") or ""),
        executor=str(decoded.get("executor") or "python"),
        payload=msgspec.json.decode(payload) if payload else None,
        attempts=int(attempt or 0),
        max_attempts=int(max_attempts or 0),
        reason=reason,
        error=error,
        dispatch_id=dispatch_id,
        run_id=run_id,
        dispatched_by=str(kind or ""),
    )
    attempts = alert.max_attempts if alert is not None else 8
    return (channel, target, body, job_id, job, run_id, dispatch_id, outcome, attempts)
