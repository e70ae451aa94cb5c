"""Pure formatting for the dashboard: durations, instants, schedules in words, charts.

Times are rendered as ``<time datetime=ISO title=UTC>``; the page's script rewrites
the text into the viewer's local time (the UTC stays on hover).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from shepherd.store.models import JobSpec

__all__ = ["bars_svg", "duration", "instant", "pretty", "schedule_words", "zoned"]

_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def duration(seconds: float | None) -> str:
    """``90`` -> ``1m30s``; ``0.25`` -> ``250ms``; ``None`` -> ``-``."""
    if seconds is None:
        return "-"
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    total = round(seconds)
    d, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
    out = "".join(f"{v}{u}" for v, u in parts if v)
    return out or "0s"


def pretty(value: Any) -> str:
    """A value as indented JSON text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def instant(epoch: float | None) -> Markup:
    """A ``<time>`` element (UTC text and title; local time filled in by the script)."""
    if epoch is None:
        return Markup("-")
    iso = _iso(epoch)
    utc = iso.replace("T", " ").replace("Z", " UTC")
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(iso, utc)


def zoned(epoch: float, tz: str) -> str:
    """An instant in the job's own time zone: ``2026-12-01 09:00 CET``."""
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M %Z")


def _cron_words(expr: str) -> str:
    parts = expr.split()
    if len(parts) != 5:
        return f"cron {expr}"
    minute, hour, dom, month, dow = parts
    if parts == ["*"] * 5:
        return "every minute"
    if minute.startswith("*/") and hour == dom == month == dow == "*":
        return f"every {minute[2:]} minutes"
    if minute.isdigit() and hour == dom == month == dow == "*":
        return f"every hour at minute {int(minute)}"
    if minute.isdigit() and hour.startswith("*/") and dom == month == dow == "*":
        return f"every {hour[2:]} hours at minute {int(minute)}"
    if minute.isdigit() and hour.isdigit():
        at = f"at {int(hour):02d}:{int(minute):02d}"
        if dom == month == "*" and dow == "*":
            return f"every day {at}"
        if dom == month == "*":
            return f"{at} on {_dow_words(dow)}"
        if month == "*" and dow == "*" and dom.isdigit():
            return f"{at} on day {int(dom)} of every month"
    return f"cron {expr}"


def _dow_words(dow: str) -> str:
    out: list[str] = []
    for part in dow.split(","):
        a, sep, b = part.partition("-")
        if a.isdigit() and (not sep or b.isdigit()) and int(a) <= 7 and (not sep or int(b) <= 7):
            out.append(_DAYS[int(a)] + (f"-{_DAYS[int(b)]}" if sep else ""))
        else:
            out.append(part)
    return ", ".join(out)


def schedule_words(spec: JobSpec) -> str:
    """The job's schedule in words (its time zone named), or "on demand"."""
    if spec.cron:
        words = _cron_words(spec.cron)
        return f"{words} ({spec.tz})" if spec.tz != "UTC" else f"{words} (UTC)"
    if spec.every is not None:
        return f"every {duration(float(spec.every))}"
    if spec.at:
        return f"once at {spec.at}"
    return "on demand"


def bars_svg(
    series: list[dict[str, int]], *, keys: tuple[str, ...], title: str, width: int = 360
) -> Markup:
    """A stacked bar chart as inline SVG (one bar per bucket, one colour per key)."""
    height, pad = 120, 18
    n = max(1, len(series))
    peak = max([sum(b.get(k, 0) for k in keys) for b in series] + [1])
    bw = (width - 2 * pad) / n
    shapes: list[str] = []
    for i, b in enumerate(series):
        y = float(height - pad)
        for j, k in enumerate(keys):
            v = b.get(k, 0)
            if not v:
                continue
            h = (height - 2 * pad) * v / peak
            y -= h
            shapes.append(
                f'<rect class="s{j}" x="{pad + i * bw + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}"'
                f' height="{h:.1f}"><title>{escape(k)}: {v}</title></rect>'
            )
    label = f'<text x="{pad}" y="12" class="lbl">{escape(title)} (peak {peak})</text>'
    axis = f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"/>'
    body = "".join(shapes)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(title)}">{label}{axis}{body}</svg>'
    )
