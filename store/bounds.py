"""Bounds of numeric input fields, declared once on the field, checked by one function.

A bounded field carries a ``Range`` in its annotation::

    max_attempts: Annotated[int, Range(1, 1000)] = 3
    timeout: Annotated[Seconds, Range(0.001, 30 * DAY, "s")] = Seconds(300.0)

:func:`check_bounds` walks a Struct (nested Structs, lists and dicts of them included)
and raises ``ConfigError`` naming the dotted field (``jobs[0].retry.max_attempts``).
Every edge that takes input calls it: ``decode_spec`` (CLI flags, config and job
files), ``runtime.jobs.validate_job`` and ``new_dispatch`` (the Python API, where a
Struct built in Python is not checked by msgspec), and the config structs'
``__post_init__``.

The marker is ours, not ``msgspec.Meta``, on purpose: msgspec would enforce a Meta
bound when a stored row is decoded, so a job stored before a bound existed (or was
tightened) would make the whole jobs table unreadable. Here a stored row always
decodes; input is what is checked. Every integer bound is far below SQLite's 64-bit
INTEGER, so no accepted value can overflow when it is bound.

:func:`check_json` refuses values that JSON cannot carry (NaN, infinities, non-string
keys, non-JSON types, strings that are not UTF-8 text) in payloads and options: msgspec
would write NaN as ``null``; and values nested deeper than ``MAX_DEPTH``, so nothing
stored is too deep to read back. :func:`check_os_text` refuses a string an executor
hands to the OS (a command, a directory, an environment value) that the OS cannot take:
one holding NUL, or one not encodable as UTF-8 (a lone surrogate).
:func:`storable` applies the same check to a run's result (an executor's return value,
a worker's report), after converting it to the builtins msgspec would encode it as.
Input deeper than a decoder's own recursion limit (about a thousand levels) raises
``RecursionError`` while it is decoded; each edge that decodes input turns that into its
bad-input error with ``TOO_DEEP``.
"""

from __future__ import annotations

import math
import types
import typing
from functools import cache
from typing import Annotated, Any, NamedTuple, Union
from urllib.parse import urlsplit

import msgspec

from shepherd.store.errors import ConfigError

__all__ = [
    "DAY",
    "HOUR",
    "MAX_DEPTH",
    "MAX_EPOCH",
    "MAX_ID",
    "TOO_DEEP",
    "Range",
    "bounds_at",
    "check_bounds",
    "check_http_url",
    "check_json",
    "check_os_text",
    "check_utf8",
    "check_value",
    "storable",
]

HOUR = 3600.0
DAY = 86400.0
MAX_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z, the last instant datetime can show
# the largest row id input may name (CLI arguments, HTTP paths and bodies): far below
# SQLite's 64-bit INTEGER, so an id given is always bound, found or not
MAX_ID = 2**62
MAX_DEPTH = 64  # levels of objects and arrays in a payload or options value
TOO_DEEP = f"nested too deeply (at most {MAX_DEPTH} levels of objects and arrays)"


class Range(NamedTuple):
    """Inclusive bounds; ``unit`` ``"s"`` marks a duration (shown as 500ms, 30d…)."""

    lo: float
    hi: float
    unit: str = ""

    def describe(self) -> str:
        return f"{self.show(self.lo)} to {self.show(self.hi)}"

    def show(self, value: float) -> str:
        if self.unit != "s":
            return str(int(value)) if float(value).is_integer() else f"{value:g}"
        for size, suffix in ((DAY, "d"), (HOUR, "h"), (60.0, "m"), (1.0, "s"), (0.001, "ms")):
            if value >= size and (value / size).is_integer():
                return f"{value / size:g}{suffix}"
        return f"{value:g}s"


def check_value(value: Any, bounds: Range, *, field: str, integer: bool = False) -> None:
    """ConfigError naming ``field`` unless ``value`` is a number within ``bounds``."""
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"expected {what}, got {value!r}", field=field)
    if bounds.lo <= value <= bounds.hi:
        return
    got = bounds.show(value) if bounds.unit and math.isfinite(value) else repr(value)
    if not value >= bounds.lo:  # also NaN
        raise ConfigError(f"must be >= {bounds.show(bounds.lo)}, got {got}", field=field)
    if not value <= bounds.hi:
        raise ConfigError(f"must be <= {bounds.show(bounds.hi)}, got {got}", field=field)


def check_bounds(obj: msgspec.Struct, *, prefix: str = "") -> None:
    """Check every bounded field of ``obj`` and of the Structs it holds."""
    for name, bounds, integer, nested in _fields(type(obj)):
        value = getattr(obj, name)
        if value is None:
            continue
        field = f"{prefix}{name}"
        if bounds is not None:
            if isinstance(value, dict):
                for key, item in value.items():
                    check_value(item, bounds, field=f"{field}.{key}", integer=integer)
            else:
                check_value(value, bounds, field=field, integer=integer)
        elif nested:
            if isinstance(value, msgspec.Struct):
                check_bounds(value, prefix=f"{field}.")
            elif isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    if isinstance(item, msgspec.Struct):
                        check_bounds(item, prefix=f"{field}[{i}].")


def bounds_at(cls: type, path: str) -> Range | None:
    """The bounds of the field at the dotted ``path`` of Struct ``cls`` (``retry.base``,
    ``approval.timeout``), or None (unbounded, unknown, or inside a list)."""
    head, _, rest = path.partition(".")
    hints = typing.get_type_hints(cls, include_extras=True)
    if head not in hints:
        return None
    bounds, base, nested = _inspect(hints[head])
    if not rest:
        return bounds
    return bounds_at(base, rest) if nested and _is_struct(base) else None


def check_http_url(value: str, *, field: str) -> None:
    """ConfigError naming ``field`` unless ``value`` is an http:// or https:// URL with a
    host, a valid port if any, and no whitespace or control characters."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"a URL holds no spaces or control characters: {value!r}", field=field)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError as exc:
        raise ConfigError(f"not a valid URL ({exc}): {value!r}", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"expected an http:// or https:// URL, got {value!r}", field=field)


def check_utf8(value: str, *, field: str) -> None:
    """ConfigError naming ``field`` unless ``value`` is encodable as UTF-8 (a str with a
    lone surrogate, from ``\\ud800`` in JSON or undecodable bytes, is not)."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ord(value[exc.start])
        raise ConfigError(
            f"not UTF-8 text: an unpaired surrogate U+{bad:04X} at character {exc.start}",
            field=field,
        ) from None


def check_os_text(value: str, *, field: str) -> None:
    """ConfigError naming ``field`` unless the OS can take ``value`` (as a command, a
    path, an argument or an environment value): no NUL character, UTF-8 text."""
    if "\x00" in value:
        where = value.index("\x00")
        raise ConfigError(
            f"must not contain a NUL character (at character {where}): the OS cannot take it",
            field=field,
        )
    check_utf8(value, field=field)


def check_json(value: Any, *, field: str, depth: int = 0) -> None:
    """ConfigError naming the first part of ``value`` that is not a JSON value (strings
    included: UTF-8 text), or that is nested deeper than ``MAX_DEPTH``."""
    if isinstance(value, str):
        check_utf8(value, field=field)
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value!r} is not a JSON number", field=field)
        return
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        raise ConfigError(TOO_DEEP, field=field)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"object keys must be strings, got {key!r}", field=field)
            check_utf8(key, field=field)
            check_json(item, field=f"{field}.{key}", depth=depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json(item, field=f"{field}[{i}]", depth=depth + 1)
        return
    raise ConfigError(f"{type(value).__name__} is not a JSON value", field=field)


def storable(value: Any, *, field: str) -> Any:
    """``value`` as the JSON builtins it is stored as (Structs, dataclasses, datetimes
    converted as msgspec encodes them, keys as strings), or ConfigError naming the part
    of it that is not a JSON value or is nested deeper than ``MAX_DEPTH``."""
    try:
        plain = msgspec.to_builtins(value, str_keys=True)
    except RecursionError:
        raise ConfigError(TOO_DEEP, field=field) from None
    except TypeError as exc:  # "Encoding objects of type X is unsupported"
        raise ConfigError(f"not a JSON value ({exc})", field=field) from None
    check_json(plain, field=field)
    return plain


# -- the per-class table --------------------------------------------------------------

_Field = tuple[str, Range | None, bool, bool]  # name, bounds, integer, holds Structs


@cache
def _fields(cls: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out: list[_Field] = []
    for name in cls.__struct_fields__:  # type: ignore[attr-defined]
        bounds, base, nested = _inspect(hints[name])
        if bounds is not None or nested:
            out.append((name, bounds, base is int, nested))
    return tuple(out)


def _inspect(hint: Any) -> tuple[Range | None, Any, bool]:
    """(bounds, base type, holds Structs) of one annotation."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _inspect(arg)
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        bounds = next((m for m in meta if isinstance(m, Range)), None)
        return bounds, base, False
    if origin is dict:
        bounds, base, _ = _inspect(typing.get_args(hint)[1])
        return bounds, base, False
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return None, hint, bool(args) and _is_struct(args[0])
    return None, hint, _is_struct(hint)


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)
