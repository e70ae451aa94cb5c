"""Output helpers for the CLI: times, durations, a tiny table printer, JSON output.

No dependencies beyond msgspec. Times are epoch seconds in the store. ``--json`` shows
them as ISO 8601 UTC (``2025-01-31T09:00:00.000Z``, :func:`plain`); human output
(:func:`human`, :func:`when`) in local time, or in the zone of the global ``--tz``
(:func:`set_display_zone`), to the second (``2025-01-31 10:00:00 CET``). Durations in
human output read ``1m30s`` (:func:`human_duration`); :func:`duration_literal` is the
form a config or job file takes back (``5m``, or a number when no unit is exact).
A value nested deeper than any stored value may be (a result stored before results were
bounded, ``store.bounds.MAX_DEPTH``) is shown as a note past ``_SHOWN_DEPTH`` levels,
so no row is too deep to print.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Any, TextIO

import msgspec

from shepherd.store.bounds import MAX_DEPTH
from shepherd.store.errors import ConfigError
from shepherd.store.models import Seconds, parse_duration, to_builtins

__all__ = [
    "CliError",
    "duration_keys",
    "duration_literal",
    "emit_json",
    "human",
    "human_duration",
    "iso",
    "plain",
    "print_fields",
    "set_display_zone",
    "table",
    "when",
]

_TIME_KEYS = frozenset({"not_before", "slot"})
_SHOWN_DEPTH = MAX_DEPTH + 8  # a stored value's levels, and a page, row and field above it
_TOO_DEEP = f"<nested deeper than {MAX_DEPTH} levels: not shown>"
_zone: tzinfo | None = None  # None: the machine's local time


def duration_keys(*types: type[msgspec.Struct]) -> frozenset[str]:
    """The names of the ``Seconds`` fields of ``types`` (optional ones too)."""
    import msgspec.inspect  # not at import: most commands never ask

    names: set[str] = set()
    for t in types:
        info = msgspec.inspect.type_info(t)
        assert isinstance(info, msgspec.inspect.StructType)
        for f in info.fields:
            kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
            if any(getattr(k, "cls", None) is Seconds for k in kinds):
                names.add(f.name)
    return frozenset(names)


@cache
def _job_durations() -> frozenset[str]:
    """A job's duration fields (``timeout``, ``retry.base``…): looked up when human
    output first shows a job, not when the CLI starts."""
    from shepherd.store.models import JobSpec, RetryPolicy

    return duration_keys(JobSpec, RetryPolicy)


def set_display_zone(name: str | None) -> None:
    """The zone human output shows times in (``--tz``); None: local time."""
    global _zone
    if name is None:
        _zone = None
        return
    from zoneinfo import ZoneInfo  # only for --tz: local time needs no zone database

    try:
        _zone = ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ConfigError(f"unknown time zone {name!r}", field="--tz") from None


def when(ts: float | None) -> str | None:
    """Epoch seconds → ``2025-01-31 10:00:00 CET`` in the display zone (None stays None)."""
    if ts is None:
        return None
    try:
        at = datetime.fromtimestamp(ts, _zone or UTC)
        if _zone is None:
            at = at.astimezone()
    except (ValueError, OverflowError, OSError):  # past year 9999 in this zone: a row
        return f"{ts:.0f} (epoch seconds)"  # stored before the bound, shown, not fatal
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def human_duration(seconds: float | None) -> str | None:
    """``90`` → ``1m30s``, ``0.25`` → ``250ms``, ``7200`` → ``2h`` (None stays None)."""
    if seconds is None:
        return None
    value = float(seconds)
    if value < 0:
        return "-" + (human_duration(-value) or "")
    if value < 1:
        ms = round(value * 1000, 3)
        return f"{ms:g}ms" if ms else "0s"
    parts: list[str] = []
    rest = round(value, 3)
    for unit, size in _UNITS:
        n = int(rest // size)
        if n:
            parts.append(f"{n}{unit}")
            rest = round(rest - n * size, 3)
    if rest or not parts:
        parts.append(f"{rest:g}s" if rest < 60 else f"{rest:.3f}s")
    return "".join(parts)


def duration_literal(seconds: float) -> str | float | int:
    """The shortest one-unit string a config or job file decodes back to exactly
    ``seconds`` (``"5m"``, ``"500ms"``), else the number itself."""
    value = float(seconds)
    if value == 0:
        return 0
    for unit, size in (*_UNITS, ("s", 1), ("ms", 0.001) if value < 1 else ("s", 1)):
        n = value / size
        if n >= 1 and n == int(n) and parse_duration(f"{int(n)}{unit}") == value:
            return f"{int(n)}{unit}"
    return value


class CliError(Exception):
    """A failure the CLI reports with a message and a specific exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ``2025-01-31T09:00:00.000Z`` (None stays None)."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _is_time(key: str) -> bool:
    return key.endswith("_at") or key in _TIME_KEYS


def plain(obj: Any) -> Any:
    """Builtins for ``--json``: Structs → dicts, time fields (``*_at``, not_before, slot)
    → ISO UTC."""
    return _times(to_builtins(_cut(obj)), iso, None)


def human(obj: Any) -> Any:
    """Builtins for human output: times as :func:`when`, a job's durations (``timeout``,
    ``retry.base``…) as :func:`human_duration`."""
    return _times(to_builtins(_cut(obj)), when, human_duration)


def _cut(data: Any, depth: int = 0) -> Any:
    """``data`` with what lies past ``_SHOWN_DEPTH`` levels replaced by a note: no walk
    over it (``to_builtins``, ``_times``, the JSON encoder) recurses to its end."""
    if isinstance(data, dict | list | tuple | msgspec.Struct) and depth >= _SHOWN_DEPTH:
        return _TOO_DEEP  # stored before results were bounded
    if isinstance(data, msgspec.Struct):
        fields = data.__struct_fields__
        return msgspec.structs.replace(
            data, **{f: _cut(getattr(data, f), depth + 1) for f in fields}
        )
    if isinstance(data, dict):
        return {k: _cut(v, depth + 1) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_cut(v, depth + 1) for v in data]
    return data


def _times(data: Any, at: Any, dur: Any) -> Any:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if number and (_is_time(k) or (dur is not None and k == "anchor")):
                out[k] = at(v)
            elif number and dur is not None and k in _job_durations():
                out[k] = dur(v)
            else:
                out[k] = _times(v, at, dur)
        return out
    if isinstance(data, list):
        return [_times(v, at, dur) for v in data]
    return data


def emit_json(data: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(msgspec.json.format(msgspec.json.encode(plain(data)), indent=2).decode())
    stream.write("\n")


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    text = " ".join(text.split())  # one line per row
    return text if len(text) <= width else text[: width - 1] + "…"


def table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    max_width: int = 48,
    empty: str = "(none)",
    out: TextIO | None = None,
) -> None:
    """Print ``rows`` as an aligned table of ``columns`` (a header, then one line each)."""
    stream = out or sys.stdout
    cells = [[_cell(r.get(c), max_width) for c in columns] for r in rows]
    if not cells:
        stream.write(f"{empty}\n")
        return
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    header = [c.upper() for c in columns]
    for line in (header, *cells):
        stream.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        stream.write("\n")


def print_fields(data: Mapping[str, Any], out: TextIO | None = None) -> None:
    """``key: value`` lines; multi-line values are indented below their key."""
    stream = out or sys.stdout
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, str) and "\n" in value.strip():
            stream.write(f"{key}:\n")
            for line in value.rstrip("\n").splitlines():
                stream.write(f"  | {line}\n")
            continue
        if isinstance(value, dict | list):
            value = msgspec.json.encode(value).decode()
        stream.write(f"{key.ljust(width)}  {'-' if value is None else value}\n")
