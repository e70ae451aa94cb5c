"""Smoke test of the benchmark harness: it runs, and reports the figures it promises.

Speed is never asserted here (see bench/README.md); only that every expected metric is
present, positive, and carries a same-run ratio. The harness runs as a subprocess, the
way it is used.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
N = 200


def test_quick_run_reports_floor_and_huey_and_skips_shepherd(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--sizes", str(N), "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| floor | commit_1row.normal |" in proc.stdout

    report = json.loads(out.read_text())
    assert report["failed"] == {}
    assert "not yet wired" in report["skipped"]["shepherd"]
    assert report["meta"]["sizes"] == [N]

    got = {(r["scenario"], r["metric"]): r for r in report["results"]}
    expected = {("floor", "python_idle_rss")}
    for sync in ("normal", "full"):
        expected |= {("floor", f"commit_1row.{sync}"), ("floor", f"commit_1000rows.{sync}")}
        expected |= {
            ("huey", f"{m}.{sync}") for m in ("enqueue", "drain_backlog", "e2e", "worker_rss_peak")
        }
    expected.add(("floor", "commit_1row_execute_commit.normal"))
    assert set(got) == expected

    for key, r in got.items():
        assert r["value"] > 0, key
        if key != ("floor", "python_idle_rss"):
            assert r["n"] == N, key
        if r["ratio_to"] is not None:
            assert r["ratio"] is not None and r["ratio"] > 0, key
    assert all(r["ratio_to"] for s, r in got.items() if s[0] == "huey")
