"""The ``shell`` bench scenario runs and reports every figure (never how fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_shell_scenario_reports_the_floor_and_both_concurrencies(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--quick", "--sizes", "20", "--json", str(out), "--only", "shell"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped"] == {}
    got = {r["metric"]: r for r in report["results"] if r["scenario"] == "shell"}
    for metric in ("floor.c2", "e2e.c2", "e2e.c8", "e2e.c2.vs_floor", "e2e.c8.vs_floor"):
        assert got[metric]["value"] > 0, metric
    assert got["e2e.c2"]["ratio_to"] == "shell:floor.c2" and got["e2e.c2"]["ratio"] > 0
