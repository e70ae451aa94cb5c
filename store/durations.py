"""Durations: ``Seconds`` (a float that decodes from ``30``, ``"30s"``, ``"5m"``…) and
``parse_duration``, shared by the models of ``store.models`` and ``store.records``."""

from __future__ import annotations

import re

from shepherd.store.errors import ConfigError

__all__ = [
    "Seconds",
    "parse_duration",
]


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
    if not seconds >= 0:  # NaN too
        raise ConfigError(f"must be a duration >= 0, got {value!r}", field=field)
    return seconds


class Seconds(float):
    """A duration in seconds; decodes from ``30``, ``"30s"``, ``"5m"``…"""

    __slots__ = ()
