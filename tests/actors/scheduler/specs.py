"""Small builders shared by the scheduler's pure tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shepherd.store.models import JobSpec, Seconds

NOW = 1_718_000_000.0  # 2024-06-10T06:13:20Z


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def job(**kw: Any) -> JobSpec:
    if "every" in kw:
        kw["every"] = Seconds(kw["every"])
    if "catch_up_window" in kw:
        kw["catch_up_window"] = Seconds(kw["catch_up_window"])
    return JobSpec(name="j", **kw)
