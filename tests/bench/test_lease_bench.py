"""Smoke test of the ``leases`` bench scenario: it runs against a real daemon and
reports its figures, the external ones as same-run ratios to the in-process drain
(speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_lease_bench_reports_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "leases", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped"] == {}
    got = {r["metric"]: r for r in report["results"] if r["scenario"] == "leases"}
    assert set(got) == {
        "python_drain.c1", "python_drain.c4", "external_drain.w1", "external_drain.w4",
        "empty_claim.w1",
    }  # fmt: skip
    for name, r in got.items():
        assert r["value"] > 0, name
        if name.startswith("external"):
            assert r["n"] == 200
            assert r["ratio_to"] == f"leases:python_drain.c{name[-1]}"
            assert r["ratio"] is not None and r["ratio"] > 0
