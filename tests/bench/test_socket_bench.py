"""Smoke test of ``shepherd-socket``: it runs, and reports every figure it promises with
its same-run ratio (speed is never asserted; see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
N = 200
SIZED = {
    "e2e_inproc.normal",
    "e2e_direct.normal",
    "e2e_socket.normal",
    "e2e_socket.normal.vs_direct",
    "enqueue_socket.normal",
}
PICKUP = {f"pickup_{k}_{p}" for k in ("socket", "inproc") for p in ("p50", "p99", "max")}
RATIOS = {"e2e_socket.normal", "e2e_socket.normal.vs_direct"} | {
    f"pickup_socket_{p}" for p in ("p50", "p99", "max")
}


def test_quick_run_reports_every_socket_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--sizes", str(N), "--json", str(out)]
    proc = subprocess.run(
        [*argv, "--only", "shepherd-socket"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped"] == {}
    got = {r["metric"]: r for r in report["results"] if r["scenario"] == "shepherd-socket"}
    assert set(got) == SIZED | PICKUP
    assert all(got[m]["n"] == N for m in SIZED)
    assert all(r["value"] > 0 for r in got.values())
    assert all(got[m]["ratio"] is not None and got[m]["ratio"] > 0 for m in RATIOS)
