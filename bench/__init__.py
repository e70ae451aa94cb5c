"""Benchmark harness for shepherd: ``python -m bench``.

Speed is measured here and never asserted in unit tests. Every figure is reported
together with its ratio to a floor (raw SQLite through aiosqlite) or a peer (huey on
SQLite) measured in the same run; see ``bench/README.md``.
"""

from bench.context import BenchContext, ScenarioSkipped
from bench.report import Result

__all__ = ["BenchContext", "Result", "ScenarioSkipped"]
