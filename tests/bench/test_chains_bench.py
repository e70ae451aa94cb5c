"""Smoke test of the ``chain`` bench scenario: it runs and reports its figures, the
chain ones as same-run ratios to the plain dispatch path (speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_chain_bench_reports_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "chain", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped"] == {}
    got = {r["metric"]: r for r in report["results"] if r["scenario"] == "chain"}
    kinds = ("plain", "plain25", "linear", "fanout")
    assert set(got) == {f"{k}_{p}" for k in kinds for p in ("p50", "p99")}
    for name, r in got.items():
        assert r["value"] > 0 and r["n"] == 100, name
        if name.startswith(("linear", "fanout")):
            assert r["ratio_to"] == f"chain:plain_{name.rsplit('_', 1)[1]}"
            assert r["ratio"] is not None and r["ratio"] > 0
