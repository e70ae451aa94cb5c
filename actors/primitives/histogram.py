"""A fixed-bucket histogram: ``observe`` is a bisect and two additions, with no lock
(everything that observes runs in the runtime's one event loop). The metrics endpoint
reads ``buckets()`` at scrape time (``runtime.http.metrics``)."""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["LATENCY", "SIZES", "Histogram"]

# seconds: 1 ms … 5 min
LATENCY: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip
SIZES: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative ``(le, count)`` pairs, ending with ``+Inf`` (Prometheus' shape)."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((repr(float(bound)), total))
        out.append(("+Inf", self.count))
        return out

    def __repr__(self) -> str:
        return f"<Histogram count={self.count} sum={self.sum:.3f}>"
