"""Rate limits: token buckets on admissions, per executor, pool, agent and job.

A rate is ``"N/s"``, ``"N/m"`` or ``"N/h"`` (N a number, 0 < N <= 1,000,000; a decimal
such as ``"0.5/s"`` is allowed); a burst is how many may start at once from a full
bucket (1..1,000,000; default: N rounded up, at least 1). A bucket starts full.

The bucket is kept as GCRA (the generic cell rate algorithm): one "theoretical arrival
time" ``tat`` and the exact interval ``T = unit / N``, both in integer ticks (``Bucket``),
so that a rate of 10/s admits exactly one per 100 ms, never a float's hair early and
never drifting over a long run. A dispatch may start at ``now`` when
``now >= tat - (burst - 1) * T``; taking a token moves ``tat`` to ``max(tat, now) + T``.
When it may not, ``wait`` says the smallest float instant at which it may (rounded up,
so the timer that wakes the dispatcher there finds the token).

``RateTable`` holds the buckets by key (``executor:<name>``, ``pool:<name>``,
``agent:<id>``, ``job:<id>``): those of the config (``[rates]``) for the life of the
dispatcher, a job's own (``JobSpec.rate`` / ``burst``) rebuilt when its spec changes.
``check(keys, now)`` is the earliest instant every bucket of ``keys`` has a token
(None: now); ``take(keys, now)`` spends one from each. Admission checks all buckets of
a dispatch first and takes only when it is admitted, so a deferred dispatch spends no
token and no attempt. Plain classes, no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

if TYPE_CHECKING:  # imported where a rate is read: a runtime without one never loads it
    from fractions import Fraction

from shepherd.store.bounds import Range
from shepherd.store.cluster import share
from shepherd.store.errors import ConfigError

__all__ = [
    "MAX_BURST",
    "MAX_COUNT",
    "Bucket",
    "RateLimit",
    "RateTable",
    "RatesConfig",
    "parse_rate",
]

MAX_COUNT = 1_000_000  # N of "N/unit" at most
MAX_BURST = 1_000_000
_UNITS = {"s": 1, "m": 60, "h": 3600}


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One bucket of the config: ``{ rate = "10/s", burst = 20 }``."""

    rate: str
    burst: Annotated[int, Range(1, MAX_BURST)] | None = None


class RatesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[rates]``: ``executor.shell = { rate = "10/s" }``, ``pool.db = …``, ``agent.main = …``."""

    executor: dict[str, RateLimit] = msgspec.field(default_factory=dict)
    pool: dict[str, RateLimit] = msgspec.field(default_factory=dict)
    agent: dict[str, RateLimit] = msgspec.field(default_factory=dict)

    def buckets(self) -> dict[str, RateLimit]:
        """Every bucket by key (``executor:shell``); each rate checked, errors naming
        ``rates.<scope>.<name>.rate`` / ``.burst``."""
        out: dict[str, RateLimit] = {}
        for scope, table in (
            ("executor", self.executor),
            ("pool", self.pool),
            ("agent", self.agent),
        ):
            for name, limit in table.items():
                where = f"rates.{scope}.{name}"
                if not name.strip():
                    raise ConfigError("a bucket needs a name", field=f"rates.{scope}")
                parse_rate(limit.rate, limit.burst, field=where)
                out[f"{scope}:{name}"] = limit
        return out


def parse_rate(rate: object, burst: object = None, *, field: str = "") -> tuple[Fraction, int]:
    """``(interval T in seconds, burst)`` of ``rate`` / ``burst``; a ConfigError naming
    ``<field>.rate`` (``rate`` when ``field`` is empty) or ``<field>.burst`` otherwise."""
    from fractions import Fraction

    rate_field = f"{field}.rate" if field else "rate"
    burst_field = f"{field}.burst" if field else "burst"
    if not isinstance(rate, str):
        raise ConfigError(f"expected a string like '10/s', got {rate!r}", field=rate_field)
    count_text, sep, unit = rate.strip().partition("/")
    unit = unit.strip()
    if not sep or unit not in _UNITS:
        raise ConfigError(
            f"invalid rate {rate!r}: expected N/s, N/m or N/h (e.g. '10/s')", field=rate_field
        )
    try:
        count = Fraction(count_text.strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(
            f"invalid rate {rate!r}: {count_text.strip()!r} is not a number", field=rate_field
        ) from None
    if not 0 < count <= MAX_COUNT:
        raise ConfigError(
            f"invalid rate {rate!r}: N must be > 0 and <= {MAX_COUNT:,}", field=rate_field
        )
    if burst is None:
        size = max(1, math.ceil(count))
    elif isinstance(burst, bool) or not isinstance(burst, int):
        raise ConfigError(f"expected an integer, got {burst!r}", field=burst_field)
    elif not 1 <= burst <= MAX_BURST:
        raise ConfigError(f"must be between 1 and {MAX_BURST:,}, got {burst}", field=burst_field)
    else:
        size = burst
    return Fraction(_UNITS[unit]) / count, size


_TICK = 2.0**60  # a float of at least 2**-8 s times this is an integer: exact ticks


class Bucket:
    """One token bucket (GCRA, exact): ``rate`` text, ``burst``, spent tokens' ``tat``.

    Times are integer ticks of ``1 / (2**60 * a)`` s (``N = a / b``): a float wall time
    converts exactly, and so does the interval ``T = unit * b / a`` s; integer sums
    neither round nor drift, and cost about as much as float ones."""

    __slots__ = ("_a", "_scale", "_t", "_tat", "_tau", "burst", "deferred", "given",
                 "interval", "rate", "split", "taken")  # fmt: skip

    def __init__(
        self, rate: str, burst: int | None = None, split: tuple[int, int] = (1, 0)
    ) -> None:
        self.rate = rate
        self.given = (rate, burst)  # as configured (a changed spec makes a new bucket)
        self.split = split  # (live nodes, this node's rank): its share of the bucket
        self.interval, self.burst = parse_rate(rate, burst)
        nodes, rank = split
        if nodes > 1:  # N/nodes per node, exactly; the burst by shares, at least 1
            self.interval *= nodes
            self.burst = max(1, share(self.burst, nodes, rank))
        count = _UNITS[rate.strip().partition("/")[2].strip()] / self.interval  # a Fraction
        self._a = count.numerator
        self._scale = (1 << 60) * self._a  # ticks per second
        self._t = int(self.interval * self._scale)  # ticks per token (exact)
        self._tau = (self.burst - 1) * self._t  # how far ahead tat may run
        self._tat: int | None = None  # None: full
        self.taken = 0
        self.deferred = 0  # dispatches held back by this bucket (counted by the caller)

    def _ticks(self, now: float) -> int:
        return int(now * _TICK) * self._a

    def wait(self, now: float) -> float | None:
        """None if a token is there at ``now``; else the instant one will be: the
        smallest float there (a timer set to it finds the token)."""
        if self._tat is None:
            return None
        at = self._tat - self._tau
        if self._ticks(now) >= at:
            return None
        f = at / self._scale  # correctly rounded; one step up if that is below
        return f if self._ticks(f) >= at else math.nextafter(f, math.inf)

    def take(self, now: float) -> None:
        n = self._ticks(now)
        self._tat = (n if self._tat is None or self._tat < n else self._tat) + self._t
        self.taken += 1

    def tokens(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (fractional: a token on its way counts part)."""
        if self._tat is None:
            return float(self.burst)
        left = self.burst - (self._tat - self._ticks(now)) / self._t
        return min(float(self.burst), max(0.0, left))

    def statistics(self, now: float) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "tokens": round(self.tokens(now), 3),
            "taken": self.taken,
            "deferred": self.deferred,
        }

    def __repr__(self) -> str:
        return f"<Bucket {self.rate} burst={self.burst}>"


class RateTable:
    """Buckets by key; see the module docstring."""

    __slots__ = ("_buckets", "_split", "blocking")

    def __init__(self, limits: Mapping[str, RateLimit] | None = None) -> None:
        self._buckets: dict[str, Bucket] = {
            key: Bucket(limit.rate, limit.burst) for key, limit in (limits or {}).items()
        }
        self._split = (1, 0)
        self.blocking = ""  # after a ``check`` that said "not yet": the bucket that decided

    def split(self, nodes: int, rank: int) -> None:
        """Every bucket becomes this node's share of it among ``nodes`` live nodes
        (``actors.cluster``): rate N/nodes, the burst split by rank; a bucket whose share
        changed starts again full."""
        self._split = (max(1, nodes), rank)
        for key, b in self._buckets.items():
            if b.split != self._split:
                self._buckets[key] = Bucket(*b.given, split=self._split)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def get(self, key: str) -> Bucket | None:
        return self._buckets.get(key)

    def set_job(self, job_id: int, rate: str | None, burst: int | None) -> None:
        """The job's own bucket after its spec changed: kept if the same, else new."""
        key = f"job:{job_id}"
        old = self._buckets.get(key)
        if rate is None:
            self._buckets.pop(key, None)
        elif old is None or old.given != (rate, burst):
            self._buckets[key] = Bucket(rate, burst, split=self._split)

    def check(self, keys: Iterable[str], now: float) -> float | None:
        """None if every bucket of ``keys`` has a token at ``now``; else the earliest
        instant all of them will (each one that has none counts a deferral)."""
        until: float | None = None
        for key in keys:
            b = self._buckets.get(key)
            at = b.wait(now) if b is not None else None
            if at is not None and b is not None:
                b.deferred += 1
                if until is None or at > until:
                    until, self.blocking = at, key
        return until

    def take(self, keys: Iterable[str], now: float) -> None:
        """One token from each bucket of ``keys`` (after ``check`` said yes)."""
        for key in keys:
            b = self._buckets.get(key)
            if b is not None:
                b.take(now)

    def statistics(self, now: float) -> dict[str, dict[str, Any]]:
        return {key: b.statistics(now) for key, b in sorted(self._buckets.items())}

    def __repr__(self) -> str:
        return f"<RateTable {len(self._buckets)} buckets>"
