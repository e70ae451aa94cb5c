"""Results model, ratio computation and the markdown / JSON renderers.

A scenario returns a list of `Result`. A result may name a reference with
``ratio_to="scenario:metric"``; after every scenario of the run has finished,
`apply_ratios` sets ``ratio = value / reference.value`` using the reference measured
in the same run at the same size ``n`` (or the reference's size-less figure). A ratio is
never taken from an earlier run: a missing reference leaves ``ratio`` as ``None``.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import psutil


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """One measured figure. ``ratio`` is filled by `apply_ratios`, never by a scenario."""

    scenario: str
    metric: str
    value: float
    unit: str
    n: int | None = None
    ratio_to: str | None = None
    ratio: float | None = None
    note: str = ""


class Report(msgspec.Struct, kw_only=True):
    """Everything one ``python -m bench`` run produced."""

    meta: dict[str, str | int | float | bool | list[int]]
    results: list[Result] = msgspec.field(default_factory=list)
    skipped: dict[str, str] = msgspec.field(default_factory=dict)
    failed: dict[str, str] = msgspec.field(default_factory=dict)


class Percentiles(msgspec.Struct, frozen=True):
    p50: float
    p99: float
    max: float


def percentiles(samples: Sequence[float]) -> Percentiles:
    """Nearest-rank p50 / p99 / max of ``samples`` (which must not be empty)."""
    if not samples:
        raise ValueError("percentiles() of no samples")
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return Percentiles(p50=rank(0.50), p99=rank(0.99), max=ordered[-1])


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process) in MiB."""
    return float(psutil.Process(pid or os.getpid()).memory_info().rss) / (1024 * 1024)


def _key(scenario: str, metric: str) -> str:
    return f"{scenario}:{metric}"


def apply_ratios(results: Iterable[Result]) -> list[Result]:
    """Return ``results`` with ``ratio`` set wherever the reference was measured."""
    results = list(results)
    by_key = {(_key(r.scenario, r.metric), r.n): r for r in results}
    out = []
    for r in results:
        ratio = None
        if r.ratio_to is not None:
            ref = by_key.get((r.ratio_to, r.n)) or by_key.get((r.ratio_to, None))
            if ref is not None and ref.value:
                ratio = r.value / ref.value
        out.append(msgspec.structs.replace(r, ratio=ratio))
    return out


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def render_markdown(report: Report) -> str:
    """A markdown document: run facts, one results table, then skips and failures."""
    lines = ["# shepherd bench", ""]
    lines += [f"- {k}: {v}" for k, v in report.meta.items()]
    lines += [
        "",
        "| scenario | metric | n | value | unit | ratio | vs (same run) | note |",
        "|---|---|--:|--:|---|--:|---|---|",
    ]
    for r in report.results:
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(
            f"| {r.scenario} | {r.metric} | {'' if r.n is None else f'{r.n:,}'} "
            f"| {_fmt(r.value)} | {r.unit} | {ratio} | {r.ratio_to or ''} | {r.note} |"
        )
    for title, items in (("Skipped", report.skipped), ("Failed", report.failed)):
        if items:
            lines += ["", f"## {title}", ""]
            lines += [f"- **{name}**: {why}" for name, why in items.items()]
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)
