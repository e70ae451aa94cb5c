"""The ``cli`` bench scenario runs and reports every figure (never how fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
METRICS = {"floor"} | {
    f"{m}{s}"
    for m in ("enqueue.socket", "enqueue.direct", "status.daemon", "status.alone")
    for s in ("", ".jobs5")
}


def test_cli_scenario_reports_every_command_beside_the_floor(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--quick", "--json", str(out), "--only", "cli", "--workdir", str(tmp_path / "w")]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped"] == {}
    got = {r["metric"]: r for r in report["results"] if r["scenario"] == "cli"}
    assert set(got) == METRICS
    for metric, r in got.items():
        assert r["value"] > 0, metric
        if metric != "floor":
            assert r["ratio_to"] == "cli:floor" and r["ratio"] > 0, metric
