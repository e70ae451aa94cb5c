"""Scheduling maths: when a job fires (cron, every, at) and whether its schedule is valid.

Pure functions of ``(spec, now)``: no I/O, no clock, no asyncio. Every time is wall-clock
epoch seconds (UTC floats); the scheduler actor calls these and performs the effects.

Schedule kinds (at most one per job; none means event-driven only):

* ``cron`` - five fields (minute hour day-of-month month day-of-week) or an alias
  ``@yearly @annually @monthly @weekly @daily @midnight @hourly``, evaluated by
  ``cronsim`` in the job's IANA zone ``tz`` (default UTC). Six-field (seconds) and
  ``@reboot`` expressions are rejected.
* ``every`` - a fixed period on a grid ``anchor + k*every`` (k >= 0); without an anchor
  the next fire is ``after + every``.
* ``at`` - one instant: ISO 8601 with an offset or ``Z``, a naive ISO time (read in
  ``tz``), or ``"in <duration>"`` relative to the creation time. The runtime should store
  ``resolve_at(spec, created_at)``; :func:`next_fire` resolves a relative ``at`` against
  ``anchor`` (default ``after``).

Daylight-saving time (cronsim's rules, which are Debian cron's):

* A *fixed-time* expression - minute and hour fields both without a leading ``*``, e.g.
  ``30 2 * * *``, ``0 9-17 * * 1-5``, ``@daily`` - names local wall-clock times, and each
  wall time fires once. A slot inside a spring-forward gap (02:30 on the day New York
  or Berlin skips 02:00-03:00) fires once at the first valid instant after the gap,
  03:00 local. A slot inside a fall-back overlap (01:30 happens twice in New York)
  fires once, at its first occurrence (fold=0), never again in the repeated hour.
* An *interval* expression - minute or hour field starting with ``*``, e.g.
  ``30 * * * *``, ``*/5 * * * *``, ``0 */2 * * *``, ``@hourly`` - is matched against the
  real local time at each instant, so it keeps its real cadence: ``30 * * * *`` fires
  every real hour, at 01:30 EDT *and* 01:30 EST on the fall-back day (two distinct
  instants, two slots), and skips the non-existent 02:30 on the spring day (01:30 EST
  is followed by 03:30 EDT, one hour later). Firing it once per wall time instead would
  stall ``*/5 * * * *`` for a whole hour each autumn.

A slot is identified by its epoch, so no instant ever fires twice; ``next_fire`` is
strictly after ``after`` even when ``after`` lies in the repeated hour.

Which due slots run (misfire policies), how errors push a job back and the
scheduler's store effects are decided in ``scheduler.plan``, on top of :func:`fires`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from shepherd.store.bounds import MAX_EPOCH
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec, parse_duration

__all__ = ["fires", "next_fire", "next_fires", "resolve_at", "upcoming", "validate_schedule"]

_MISFIRE = ("skip", "run_once", "run_all")
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RELATIVE = re.compile(r"^\s*in\s+(.+)$", re.IGNORECASE)


def validate_schedule(spec: JobSpec, now: float) -> None:
    """Raise ConfigError naming the field if the schedule part of ``spec`` is invalid."""
    kinds = [k for k in ("cron", "at", "every") if getattr(spec, k) is not None]
    if len(kinds) > 1:
        raise ConfigError(f"set at most one of cron, at, every; got {kinds}", field="schedule")
    zone = _zone(spec.tz)
    if spec.cron is not None:
        try:
            it = CronSim(_cron_expr(spec.cron), datetime.fromtimestamp(now, zone))
        except CronSimError as exc:
            raise ConfigError(f"invalid expression {spec.cron!r}: {exc}", field="cron") from None
        if next(it, None) is None:
            raise ConfigError(f"{spec.cron!r} never fires", field="cron")
    if spec.at is not None:
        resolve_at(spec, now)
    if spec.every is not None and not (0 < spec.every < math.inf):
        raise ConfigError(f"must be a positive duration, got {spec.every!r}", field="every")
    if not spec.catch_up_window >= 0:
        raise ConfigError("must be >= 0", field="catch_up_window")
    if spec.misfire not in _MISFIRE:
        raise ConfigError(f"expected one of {', '.join(_MISFIRE)}", field="misfire")


def resolve_at(spec: JobSpec, now: float) -> float:
    """The epoch of ``spec.at``; ``"in 10m"`` is relative to ``now``, naive ISO is in tz."""
    text = (spec.at or "").strip()
    m = _RELATIVE.match(text)
    if m:
        epoch = now + parse_duration(m.group(1).strip(), field="at")
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"invalid instant {spec.at!r}; use ISO 8601 (2025-01-31T09:00:00Z) or 'in 10m'",
                field="at",
            ) from None
        if when.tzinfo is None:
            when = _localize(when, _zone(spec.tz))
        epoch = when.timestamp()
    if not epoch <= MAX_EPOCH:  # a later instant cannot be shown (or stored as ISO)
        raise ConfigError(f"{spec.at!r} is after 9999-12-31T23:59:59Z", field="at")
    return epoch


def next_fire(spec: JobSpec, after: float, *, anchor: float | None = None) -> float | None:
    """The first fire time strictly after ``after``, or None if there is none."""
    return next(fires(spec, after, anchor), None)


def next_fires(spec: JobSpec, after: float, n: int, *, anchor: float | None = None) -> list[float]:
    """The next ``n`` fire times after ``after`` (fewer if the schedule ends)."""
    return list(islice(fires(spec, after, anchor), max(n, 0)))


def upcoming(
    spec: JobSpec, next_run_at: float | None, n: int, *, anchor: float | None = None
) -> list[float]:
    """The next ``n`` fire times of a stored job: its ``next_run_at`` and the fires after
    it. An ``at`` job has that one slot only: its instant resolved again from the stored
    ISO text (microseconds) may differ from the stored float by rounding, and must not
    be listed as a second fire."""
    if next_run_at is None or n <= 0:
        return []
    if spec.at is not None:
        return [next_run_at]
    return [next_run_at, *next_fires(spec, next_run_at, n - 1, anchor=anchor)]


# -- helpers ---------------------------------------------------------------------------


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"unknown IANA time zone {tz!r}", field="tz") from None


def _cron_expr(cron: str) -> str:
    expr = cron.strip()
    if expr.startswith("@"):
        if expr.lower() not in _ALIASES:
            raise ConfigError(f"unknown alias {expr!r}", field="cron")
        return _ALIASES[expr.lower()]
    if len(expr.split()) != 5:
        raise ConfigError(f"expected 5 fields, got {cron!r}", field="cron")
    return expr


def _localize(naive: datetime, zone: ZoneInfo) -> datetime:
    """A wall time in ``zone``: first occurrence if repeated, end of the gap if skipped."""
    when = naive.replace(tzinfo=zone, fold=0)
    while when != when.astimezone(UTC).astimezone(zone):  # does not exist: in a gap
        when = when.replace(second=0, microsecond=0) + timedelta(minutes=1)  # wall-time step
    return when


def fires(spec: JobSpec, after: float, anchor: float | None) -> Iterator[float]:
    """Fire times strictly after ``after``, increasing."""
    if spec.cron is not None:
        zone = _zone(spec.tz)
        last = after
        for fire in CronSim(_cron_expr(spec.cron), datetime.fromtimestamp(after, zone)):
            ts: float = fire.timestamp()
            # cronsim walks naive wall time for fixed-time expressions, so from a point
            # inside a repeated hour it can return the hour's first pass: skip those.
            if ts > last:
                last = ts
                yield ts
    elif spec.every is not None:
        every = float(spec.every)
        base = after if anchor is None else anchor
        k = max(0, math.floor((after - base) / every) + 1)
        while True:
            slot = base + k * every
            if slot > after:
                yield slot
            k += 1
    elif spec.at is not None:
        at = resolve_at(spec, after if anchor is None else anchor)
        if at > after:
            yield at
