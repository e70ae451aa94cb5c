"""Spool files: the two event formats, as pure functions (no I/O, no clock: ``now`` is
passed).

Two formats, told apart by their keys (both strict: an unknown field is an error):

- **OpenClaw spool event v1** (``version`` present): ``version: 1``, ``id`` (a UUID, equal
  to the file name), ``createdAt`` (ISO 8601 with a zone), ``createdAtMs`` (> 0),
  ``priority?`` (``low | normal | high | critical``, the shepherd levels of those names),
  ``maxRetries?``, ``retryCount?`` (integers >= 0), ``expiresAt?`` and ``payload:
  {kind: "agentTurn", message (non-empty), agentId?, sessionKey?, model?, thinking?,
  delivery?: {enabled?, channel?, to?}}``. It runs as ``default_job`` with the payload
  ``{message, agent, session_key (default spool:<id>), model, thinking, delivery}``,
  ``maxRetries + 1 - retryCount`` attempts (``maxRetries`` unset: the spool's
  ``max_retries``, as OpenClaw's), the event id as its idempotency key.
- **shepherd's event** (``job`` present): ``job``, ``payload?`` (an object),
  ``priority?``, ``not_before?`` / ``expires_at?`` (ISO 8601 with a zone, or epoch
  seconds), ``max_attempts?``, ``idempotency_key?`` (default: the file name without
  ``.json``). Unset fields fall back to the job's spec, as ``Runtime.enqueue``.

``parse`` turns a file's name and bytes into an ``Accepted`` (an ``EnqueueRequest`` and
its place in a batch) or raises ``ConfigError`` naming the field; ``batch_order`` sorts
a batch: priority (critical first), then oldest (``createdAtMs``; the file's mtime for
shepherd's format), then name. The directory itself (names, writes) is ``files.py``;
its names are re-exported here for callers that build and write events.

The module is longer than most because it holds both formats whole, each field as the
reader checks it, beside the one parser that tells them apart.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shepherd.actors.spool.config import MAX_RETRIES
from shepherd.actors.spool.files import (
    ERROR_SUFFIX,
    MAX_FILE_BYTES,
    REJECTED_DIR,
    error_name,
    is_ignored,
    is_pending_name,
    is_rejected_name,
    iso_ms,
    write_error,
    write_event,
    write_file,
)
from shepherd.store.bounds import MAX_EPOCH, TOO_DEEP, check_bounds, check_json
from shepherd.store.errors import ConfigError
from shepherd.store.json_errors import json_problem
from shepherd.store.keys import key_problem
from shepherd.store.models import PRIORITIES, EnqueueRequest, Priority

__all__ = [
    "ERROR_SUFFIX",
    "KIND",
    "MAX_FILE_BYTES",
    "MAX_RETRIES",
    "OPENCLAW_PRIORITIES",
    "REJECTED_DIR",
    "Accepted",
    "Description",
    "OpenClawEvent",
    "ShepherdEvent",
    "batch_order",
    "build_event",
    "describe",
    "error_name",
    "is_full_event",
    "is_ignored",
    "is_pending_name",
    "is_rejected_name",
    "iso_ms",
    "openclaw_problem",
    "parse",
    "priority_rank",
    "problem",
    "write_error",
    "write_event",
    "write_file",
]

KIND = "spool"  # the dispatches' kind
OPENCLAW_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_AT = re.compile(r" - at `\$\.?(.*?)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(.*)`$")

Text = Annotated[str, Meta(min_length=1)]
Instant = Annotated[datetime, Meta(tz=True)]
Count = Annotated[int, Meta(ge=0, le=MAX_RETRIES)]


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    pass


class DeliveryV1(_Strict, frozen=True):
    enabled: bool | UnsetType = UNSET
    channel: str | UnsetType = UNSET
    to: str | UnsetType = UNSET


class AgentTurnV1(_Strict, frozen=True, kw_only=True):
    kind: Literal["agentTurn"]
    message: Text
    agent_id: str | UnsetType = UNSET
    session_key: str | UnsetType = UNSET
    model: str | UnsetType = UNSET
    thinking: str | UnsetType = UNSET
    delivery: DeliveryV1 | UnsetType = UNSET


class OpenClawEvent(_Strict, frozen=True, kw_only=True):
    version: Literal[1]
    id: Annotated[str, Meta(pattern=_UUID)]
    created_at: Instant
    created_at_ms: Annotated[int, Meta(gt=0)]
    priority: Literal["low", "normal", "high", "critical"] | UnsetType = UNSET
    max_retries: Count | UnsetType = UNSET
    retry_count: Count | UnsetType = UNSET
    expires_at: Instant | UnsetType = UNSET
    payload: AgentTurnV1


class ShepherdEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    job: Text
    payload: dict[str, Any] | None = None
    priority: Priority | None = None
    not_before: Instant | float | None = None
    expires_at: Instant | float | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None


class _Probe(msgspec.Struct):  # which format: only the keys that tell them apart
    version: Any = UNSET
    job: Any = UNSET


class Accepted(msgspec.Struct, frozen=True):
    """A valid file: what to enqueue and its place in the batch (``batch_order``)."""

    name: str
    request: EnqueueRequest
    rank: int  # priority_rank of its priority (normal when unset)
    created: float  # epoch seconds: createdAtMs, or the file's mtime


class Description(msgspec.Struct, frozen=True):
    priority: str
    retry_count: int
    created_at: float | None


_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (_Probe, OpenClawEvent, ShepherdEvent)
}


def priority_rank(priority: str | None) -> int:
    """0 for critical … 4 for background; unset or unknown counts as normal."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else PRIORITIES.index("normal")


def batch_order(items: list[Accepted]) -> list[Accepted]:
    return sorted(items, key=lambda a: (a.rank, a.created, a.name))


# -- parsing ----------------------------------------------------------------------------


def parse(
    name: str,
    data: bytes,
    *,
    mtime: float = 0.0,
    default_job: str | None = None,
    max_retries: int = 3,
) -> Accepted:
    """A pending file's name and bytes as what to enqueue; ``ConfigError`` naming the
    field (``payload.message``) or the file (``file``) when it cannot be ingested."""
    if not is_pending_name(name):
        raise ConfigError(f"{name!r} is not a spool file name (<id>.json)", field="file")
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES} bytes", field="file")
    stem = name.removesuffix(".json")
    if not data.strip():
        raise ConfigError("the file is empty", field="file")
    try:
        probe = _decoders[_Probe].decode(data)
    except msgspec.ValidationError:  # before DecodeError, its base class
        raise ConfigError("not a JSON object", field="file") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"not JSON: {json_problem(data, str(exc))}", field="file") from None
    except RecursionError:
        raise ConfigError(TOO_DEEP, field="file") from None
    if probe.version is not UNSET:
        if probe.version != 1 or isinstance(probe.version, bool):
            raise ConfigError(
                f"unsupported version {probe.version!r}; this reader takes version 1",
                field="version",
            )
        event: OpenClawEvent = _decode(OpenClawEvent, data)
        if event.id != stem:
            raise ConfigError(f"event id {event.id!r} differs from the file name", field="id")
        return _from_openclaw(name, event, default_job, max_retries)
    if probe.job is not UNSET:
        return _from_shepherd(name, stem, _decode(ShepherdEvent, data), mtime)
    raise ConfigError(
        "neither an OpenClaw spool event (`version`) nor a shepherd event (`job`)", field="file"
    )


def _decode(kind: type[Any], data: bytes) -> Any:
    try:
        return _decoders[kind].decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT.search(text)
        path = m.group(1) if m else ""
        if kind is OpenClawEvent:
            path = ".".join(_camel(p) for p in path.split(".")) if path else ""
        text = text[: m.start()] if m else text
        unknown = _UNKNOWN.match(text)
        if unknown:  # the unknown field is the one to name
            path, text = f"{path}.{unknown.group(1)}".lstrip("."), "unknown field"
        raise ConfigError(text, field=path or "file") from None
    except RecursionError:
        raise ConfigError(TOO_DEEP, field="file") from None


def _camel(part: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), part)


def _from_openclaw(
    name: str, event: OpenClawEvent, default_job: str | None, max_retries: int
) -> Accepted:
    if default_job is None:
        raise ConfigError(
            "no job runs OpenClaw agentTurn events: set [spool] default_job", field="job"
        )
    turn = event.payload
    allowed = max_retries if isinstance(event.max_retries, UnsetType) else event.max_retries
    done = 0 if isinstance(event.retry_count, UnsetType) else event.retry_count
    if done > allowed:
        raise ConfigError(
            f"retryCount {done} exceeds maxRetries {allowed}: no attempt left", field="retryCount"
        )
    payload = {
        "message": turn.message,
        "agent": turn.agent_id,
        "session_key": f"spool:{event.id}" if turn.session_key is UNSET else turn.session_key,
        "model": turn.model,
        "thinking": turn.thinking,
        "delivery": None if turn.delivery is UNSET else msgspec.to_builtins(turn.delivery),
    }
    priority = None if isinstance(event.priority, UnsetType) else event.priority
    request = EnqueueRequest(
        job=default_job,
        payload={k: v for k, v in payload.items() if not isinstance(v, UnsetType | None)},
        priority=priority,
        expires_at=None if isinstance(event.expires_at, UnsetType) else _epoch(event.expires_at),
        max_attempts=allowed + 1 - done,
        idempotency_key=event.id,
        kind=KIND,
    )
    check_bounds(request)
    return Accepted(name, request, priority_rank(priority), event.created_at_ms / 1000.0)


def _from_shepherd(name: str, stem: str, event: ShepherdEvent, mtime: float) -> Accepted:
    key = event.idempotency_key if event.idempotency_key is not None else stem
    if bad := key_problem(key):
        raise ConfigError(bad, field="idempotency_key")
    check_json(event.payload, field="payload")
    request = EnqueueRequest(
        job=event.job,
        payload=event.payload,
        priority=event.priority,
        not_before=_epoch(event.not_before),
        expires_at=_epoch(event.expires_at),
        max_attempts=event.max_attempts,
        idempotency_key=key,
        kind=KIND,
    )
    check_bounds(request)
    return Accepted(name, request, priority_rank(event.priority), mtime)


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, float | int):
        return value
    return min(value.timestamp(), MAX_EPOCH)


def problem(data: Any, name: str, *, default_job: str | None = "-") -> str | None:
    """Why the decoded object ``data`` in file ``name`` would be rejected (None: it
    would be ingested, as far as the file alone says: the job is not looked up)."""
    try:
        parse(name, msgspec.json.encode(data), default_job=default_job)
    except ConfigError as exc:
        return str(exc)
    return None


def openclaw_problem(event: Mapping[str, Any]) -> str | None:
    """Why ``event`` is not a valid OpenClaw spool event v1 (None: it is)."""
    if "version" not in event:
        return "version: missing (OpenClaw spool events carry version 1)"
    return problem(dict(event), f"{event.get('id')}.json")


def describe(data: Mapping[str, Any]) -> Description:
    """Priority, retry count and creation time of a decoded file, leniently (``status``)."""
    prio = data.get("priority")
    retries = data.get("retryCount")
    created = data.get("createdAtMs")
    return Description(
        priority=prio if isinstance(prio, str) and prio in PRIORITIES else "normal",
        retry_count=retries if isinstance(retries, int) and retries >= 0 else 0,
        created_at=created / 1000.0 if isinstance(created, int | float) and created > 0 else None,
    )


# -- building ------------------------------------------------------------------------


def is_full_event(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is a whole event (id and creation time set), not a request."""
    return all(k in data for k in ("id", "createdAt", "createdAtMs"))


def build_event(request: Mapping[str, Any], now: float) -> dict[str, Any]:
    """An OpenClaw v1 event from a create request (``version``, ``payload``,
    ``priority?``, ``maxRetries?``, ``expiresAt?``): a fresh id, the creation time,
    ``retryCount: 0`` (OpenClaw's ``buildSpoolEvent``). Not validated: see
    ``openclaw_problem``."""
    head = {
        "version": request.get("version", 1),
        "id": str(uuid.uuid4()),
        "createdAt": iso_ms(now),
        "createdAtMs": int(now * 1000),
    }
    rest = {k: v for k, v in request.items() if k not in head and k != "retryCount"}
    return {**head, **rest, "retryCount": 0}
