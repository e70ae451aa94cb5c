"""Output helpers for the CLI: ISO UTC times, a tiny table printer, JSON output.

No dependencies beyond msgspec. Times are epoch seconds in the store and ISO 8601 UTC
(``2025-01-31T09:00:00.000Z``) everywhere the CLI shows them, in tables and in JSON.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from shepherd.store.models import to_builtins

__all__ = ["CliError", "emit_json", "iso", "plain", "print_fields", "table"]

_TIME_KEYS = frozenset({"not_before", "slot"})


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
    """Builtins for output: Structs → dicts, time fields (``*_at``, not_before, slot) → ISO."""
    data = to_builtins(obj)
    return _times(data)


def _times(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: (iso(v) if _is_time(k) and isinstance(v, int | float) else _times(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_times(v) for v in data]
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
