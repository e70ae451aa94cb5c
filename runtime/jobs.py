"""Job specs: validation and the stored form.

``validate_job`` checks everything a spec must satisfy before it is stored, and every
error names the field; a rejected spec never touches the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from shepherd.store import keys
from shepherd.store.bounds import check_bounds, check_json, check_utf8, check_value
from shepherd.store.errors import ConfigError
from shepherd.store.models import (
    DELAY,
    EXPIRES_IN,
    EnqueueRequest,
    JobRow,
    JobSpec,
    decode_spec,
    encode_json,
    normalize_capabilities,
    priority_rank,
)
from shepherd.store.ops import NewDispatch, SaveJob

if TYPE_CHECKING:
    from shepherd.actors.executors.base import Executor
    from shepherd.actors.executors.specs import Validator

__all__ = [
    "check_enqueue",
    "check_payload",
    "first_run_at",
    "job_from_data",
    "keep_ended",
    "new_dispatch",
    "plain_payload",
    "save_op",
    "validate_job",
]

_OVERLAP = ("skip", "queue", "allow", "replace")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$")


def validate_job(
    spec: JobSpec,
    executors: Mapping[str, Validator],
    now: float,
    *,
    previous: JobSpec | None = None,
) -> None:
    """Everything ``spec`` must satisfy before it is stored; ``previous`` is the stored
    job it replaces, if any (an ``at`` it already had may have passed). ``executors``
    are the executors by name, or their checks alone (``specs.SpecCheck``)."""
    # what checking a job needs, loaded for it (an enqueue or a read needs none of it)
    from shepherd.actors.dispatcher.rates import parse_rate
    from shepherd.actors.router.delivery import validate_delivery
    from shepherd.actors.scheduler import cron
    from shepherd.runtime._approval_policy import validate_approval
    from shepherd.runtime._chains import validate_chain

    if not _NAME.match(spec.name):
        raise ConfigError(
            f"invalid job name {spec.name!r}: 1-200 characters, letters, digits and _ . : @ / -",
            field="name",
        )
    executor = executors.get(spec.executor)
    if executor is None:
        raise ConfigError(
            f"unknown executor {spec.executor!r}; known: {', '.join(sorted(executors))}",
            field="executor",
        )
    check_bounds(spec)  # a JobSpec built in Python is not checked by msgspec
    for field in spec.__struct_fields__:  # text the store can hold (what the OS can
        value = getattr(spec, field)  # take, too, is each executor's check)
        if isinstance(value, str):
            check_utf8(value, field=field)
    check_json(spec.payload, field="payload")
    check_json(spec.options, field="options")
    if spec.retry.max_delay < spec.retry.base:
        raise ConfigError("must be >= retry.base", field="retry.max_delay")
    if spec.overlap not in _OVERLAP:
        raise ConfigError(
            f"unknown overlap policy {spec.overlap!r}; expected one of {', '.join(_OVERLAP)}",
            field="overlap",
        )
    if spec.pool is not None and not spec.pool.strip():
        raise ConfigError("must not be empty (omit it for no pool)", field="pool")
    if spec.rate is not None:
        parse_rate(spec.rate, spec.burst)  # errors name rate / burst
    elif spec.burst is not None:
        raise ConfigError("a burst needs a rate (e.g. rate = '10/s')", field="burst")
    normalize_capabilities(spec.capabilities, wildcard=False)  # errors name capabilities[i]
    validate_chain(spec)
    cron.validate_schedule(spec, now)
    if spec.at is not None and (previous is None or previous.at != spec.at):
        _check_at_not_past(spec, now)
    validate_delivery(spec.options)
    validate_approval(spec)
    executor.validate(spec)


def _check_at_not_past(spec: JobSpec, now: float) -> None:
    """A newly set ``at`` may lie up to ``MISFIRE_GRACE`` (60 s) in the past, and then
    runs at once, as a slot that late still would; an older one is refused."""
    from shepherd.actors.scheduler import cron
    from shepherd.actors.scheduler.plan import MISFIRE_GRACE

    when = cron.resolve_at(spec, now)
    if when < now - MISFIRE_GRACE:
        from datetime import UTC, datetime

        iso = datetime.fromtimestamp(when, UTC).isoformat()
        raise ConfigError(
            f"{spec.at!r} ({iso}) is in the past, more than {MISFIRE_GRACE:g}s ago;"
            " give a future instant or e.g. 'in 10m'",
            field="at",
        )


def check_enqueue(
    req: EnqueueRequest,
    *,
    where: str = "",
    delay: float | None = None,
    expires_in: float | None = None,
) -> None:
    """Bounds and JSON of one enqueue's values (``delay`` / ``expires_in`` are the
    relative forms the API and CLI take) and its producer key (``store.keys.
    key_problem``); errors name ``<where>.<field>``."""
    prefix = f"{where}." if where else ""
    check_bounds(req, prefix=prefix)
    check_json(req.payload, field=f"{prefix}payload")
    if delay is not None:
        check_value(delay, DELAY, field=f"{prefix}delay")
    if expires_in is not None:
        check_value(expires_in, EXPIRES_IN, field=f"{prefix}expires_in")
    if req.idempotency_key is not None and (bad := keys.key_problem(req.idempotency_key)):
        raise ConfigError(bad, field=f"{prefix}idempotency_key")


def check_payload(
    spec: JobSpec,
    payload: Any,
    executors: Mapping[str, Executor],
    *,
    field: str = "payload",
) -> None:
    """Refuse a payload that does not fit the payload type its python target declares
    (``payload.to: Expected str, got int``); ``payload`` None is the job's default.
    Nothing is checked where the target is untyped or not registered here."""
    executor = executors.get(spec.executor)
    check = getattr(executor, "check_payload", None)
    if check is not None:
        check(spec, spec.payload if payload is None else payload, field=field)


def plain_payload(req: EnqueueRequest) -> EnqueueRequest:
    """``req`` with a Struct payload (``rt.enqueue("report", Report(...))``) as builtins."""
    if isinstance(req.payload, msgspec.Struct):
        payload = msgspec.to_builtins(req.payload)
        if not isinstance(payload, dict):
            raise ConfigError("a Struct payload must encode as an object", field="payload")
        return msgspec.structs.replace(req, payload=payload)
    return req


def job_from_data(data: Mapping[str, Any]) -> JobSpec:
    """Decode a job from builtins (TOML table, JSON object, CLI flags)."""
    return decode_spec(dict(data), JobSpec)


def first_run_at(spec: JobSpec, now: float) -> tuple[float | None, float | None]:
    """(next_run_at, anchor) for a newly added, updated or re-enabled job."""
    from shepherd.actors.scheduler import cron

    if not spec.enabled:
        return None, None
    if spec.at is not None:
        return cron.resolve_at(spec, now), None
    if spec.every is not None:
        return now + float(spec.every), now
    if spec.cron is not None:
        return cron.next_fire(spec, now), None
    return None, None


def keep_ended(spec: JobSpec, previous: JobRow | None, now: float) -> JobSpec:
    """``spec`` as ``add_job`` stores it over ``previous``, the stored job of that name.
    Adding a one-shot job again, as a daemon restart with the same config does, keeps
    what the store knows of it: a relative ``at`` (``in 10m``) keeps the instant it
    resolved to when the job was first added, and a job that is disabled once that
    instant has passed (its run ended it, or it was disabled before it could run) stays
    disabled, so it does not fire again. ``update_job(name, at=...)`` moves it and
    ``run_now`` runs it again."""
    if previous is None or spec.at is None or previous.spec.at is None:
        return spec
    from shepherd.actors.scheduler import cron

    if _relative(spec.at):
        spec = msgspec.structs.replace(spec, at=previous.spec.at)
    if (
        spec.at == previous.spec.at
        and spec.enabled
        and not previous.spec.enabled
        and cron.resolve_at(previous.spec, now) <= now
    ):
        spec = msgspec.structs.replace(spec, enabled=False)
    return spec


def _relative(at: str) -> bool:
    return at.strip().lower().startswith("in ")


def save_op(spec: JobSpec, now: float, previous: JobRow | None = None) -> SaveJob:
    """The write for a new or changed job. The next fire time is recomputed unless the
    job stays enabled with the same schedule (OCS ``updateJob``): restarting with the
    same config or changing only, say, its priority never moves or skips a slot."""
    kept = previous is not None and _keeps_schedule(previous.spec, spec)
    if previous is not None and kept:
        next_run_at, anchor = previous.next_run_at, previous.anchor
    else:
        next_run_at, anchor = first_run_at(spec, now)
    if spec.at is not None and _relative(spec.at):
        # store the resolved instant so a restart does not move it
        from datetime import UTC, datetime

        at = datetime.fromtimestamp(next_run_at or now, UTC).isoformat()
        spec = msgspec.structs.replace(spec, at=at)
    return SaveJob(
        name=spec.name,
        executor=spec.executor,
        enabled=spec.enabled,
        spec=encode_json(spec),
        next_run_at=next_run_at,
        now=now,
        anchor=anchor,
        kept=kept,
    )


def _keeps_schedule(old: JobSpec, new: JobSpec) -> bool:
    fields = ("cron", "tz", "at", "every")
    return old.enabled and new.enabled and all(getattr(old, f) == getattr(new, f) for f in fields)


def new_dispatch(row: JobRow, req: EnqueueRequest, now: float, *, where: str) -> NewDispatch:
    spec = row.spec
    check_enqueue(req, where=where)
    prefix = f"{where}." if where else ""
    if not spec.enabled and req.kind != "run_now":  # disabled: must not run (README)
        raise ConfigError(
            f"job {spec.name!r} is disabled: enable it, or run it once with run_now"
            " (`shepherd jobs run`)",
            field=f"{prefix}job",
        )
    try:
        prio = priority_rank(req.priority or spec.priority)
    except ConfigError as exc:
        text = str(exc).removeprefix(f"{exc.field}: ") if exc.field else str(exc)
        raise ConfigError(text, field=f"{prefix}priority") from None
    max_attempts = req.max_attempts if req.max_attempts is not None else spec.retry.max_attempts
    needs = ",".join(
        normalize_capabilities(
            req.capabilities or [], field=f"{prefix}capabilities", wildcard=False
        )
    )
    if req.owner is not None and (not isinstance(req.owner, str) or not req.owner.strip()):
        raise ConfigError(
            "must be a non-empty string (omit it for no owner)", field=f"{prefix}owner"
        )
    expires_at = req.expires_at
    if expires_at is None and spec.expires_in is not None:
        expires_at = now + float(spec.expires_in)
    return NewDispatch(
        job_id=row.id,
        job_name=spec.name,
        kind=req.kind,
        priority=prio,
        not_before=req.not_before if req.not_before is not None else now,
        max_attempts=max_attempts,
        expires_at=expires_at,
        payload=encode_json(req.payload) if req.payload is not None else None,
        idempotency_key=req.idempotency_key,
        slot=req.slot,
        parent_run_id=req.parent_run_id,
        needs=needs or None,
        owner=req.owner,
    )
