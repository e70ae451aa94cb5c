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


SHEPHERD = {
    "shepherd-enqueue": {
        f"enqueue_{v}.normal{s}"
        for v in ("single", "concurrent", "batch")
        for s in ("", ".vs_floor")
    },
    "shepherd-e2e": {
        "e2e.normal",
        "e2e.normal.vs_floor",
        "e2e_c256.normal",
        "e2e_single_producer.normal",
        "worker_rss_peak.normal",
        "worker_rss_after.normal",
        "worker_cpu_per_job.normal",
    },
    # an embedded runtime's RSS, idle (no n) and after its runs (n of them)
    "shepherd-memory": {"rss_idle", "rss_after_runs"},
    # n is the number of latency samples (pickup) or of queued dispatches (recovery)
    "shepherd-pickup": {
        f"pickup_{k}_{p}" for k in ("inproc", "xproc") for p in ("p50", "p99", "max")
    },
    # the producer in another process, beside the backlog drain of the same run
    "shepherd-xproc": {
        "drain_backlog.normal",
        "enqueue_xproc_alone.normal",
        "e2e_xproc_single.normal",
        "e2e_xproc_single.normal.vs_producer",
    },
    "shepherd-recovery": {
        "recovery_to_open",
        "recovery_to_first_dispatch",
        "recovery_dispatcher_seconds",
        "recovery_start_check_seconds",
    },
    # n is the number of rows to prune
    "shepherd-prune": {
        f"commit_{p}.{phase}"
        for p in ("p50", "p99", "max")
        for phase in ("idle", "prune", "unbatched")
    }
    | {"prune_rows_per_s", "prune_unbatched_rows_per_s", "prune_seconds"},
    # n is the number of generated rows (the file's size)
    "shepherd-backup": {"db_mib", "backup_mib_per_s.inproc"}
    | {f"backup_seconds.{k}" for k in ("inproc", "cli")}
    | {f"throughput.{k}" for k in ("idle", "inproc", "cli", "idle_after")},
    # files dropped at once / at a steady rate, beside rt.enqueue of the same jobs
    "spool": {"enqueue_burst", "ingest_burst", "enqueue_steady", "ingest_steady"}
    | {f"{k}_{p}" for k in ("pickup", "enqueue_pickup") for p in ("p50", "p99", "max")},
}
SIZELESS = {("floor", "python_idle_rss"), ("shepherd-memory", "rss_idle")} | {
    (s, m)
    for s in ("shepherd-pickup", "shepherd-recovery", "shepherd-prune", "shepherd-backup")
    for m in SHEPHERD[s]
}
# n of the steady spool figures is the number of files (200/s for 1 s), not --sizes
SIZELESS |= {("spool", m) for m in SHEPHERD["spool"] if m not in ("enqueue_burst", "ingest_burst")}


def test_quick_run_reports_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--sizes",
            str(N),
            "--json",
            str(out),
            # the scheduler (minutes of real slots) and agent benches are too slow for a smoke
            "--only",
            "floor",
            "huey",
            *SHEPHERD,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| floor | commit_1row.normal |" in proc.stdout

    report = json.loads(out.read_text())
    assert report["failed"] == {}
    assert report["skipped"] == {}
    assert report["meta"]["sizes"] == [N]

    got = {(r["scenario"], r["metric"]): r for r in report["results"]}
    expected = {("floor", "python_idle_rss")}
    for sync in ("normal", "full"):
        expected |= {("floor", f"commit_1row.{sync}"), ("floor", f"commit_1000rows.{sync}")}
        expected |= {
            ("huey", f"{m}.{sync}")
            for m in ("enqueue", "drain_backlog", "e2e", "worker_rss_peak", "worker_cpu_per_job")
        }
    expected.add(("floor", "commit_1row_execute_commit.normal"))
    expected |= {(scenario, m) for scenario, metrics in SHEPHERD.items() for m in metrics}
    assert set(got) == expected

    for key, r in got.items():
        assert r["value"] > 0, key
        if key not in SIZELESS:
            assert r["n"] == N, key
        if r["ratio_to"] is not None:
            assert r["ratio"] is not None and r["ratio"] > 0, key
    assert all(
        r["ratio_to"]
        for s, r in got.items()
        if s[0] in ("huey", "shepherd-enqueue")
        and s[1] != "worker_cpu_per_job.normal"
        and s[1] != "worker_cpu_per_job.full"
    )  # huey's CPU per task is the reference of shepherd's, measured after it
    assert all(r["ratio_to"] for s, r in got.items() if s[0] == "shepherd-e2e")
    xproc = got[("shepherd-xproc", "e2e_xproc_single.normal")]
    assert xproc["ratio_to"] == "shepherd-xproc:drain_backlog.normal"
    assert got[("spool", "ingest_burst")]["ratio_to"] == "spool:enqueue_burst"
    assert got[("spool", "pickup_p99")]["ratio_to"] == "spool:enqueue_pickup_p99"
