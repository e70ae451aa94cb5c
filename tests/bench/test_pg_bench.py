"""Smoke test of the ``postgres`` bench scenario: shepherd on PostgreSQL, pgqueuer and
procrastinate on the same server in one run (small sizes). It reports every figure for
1, 2 and 3 nodes, shepherd's and procrastinate's as same-run ratios to pgqueuer's
(speed is never asserted), and drops its scratch database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.pg_helpers import SERVER

REPO = Path(__file__).resolve().parents[2]
N = 200
SYSTEMS = ("pgqueuer", "procrastinate", "shepherd")


async def _databases() -> set[str]:
    conn = await asyncpg.connect(SERVER)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database")
    finally:
        await conn.close()
    return {str(r[0]) for r in rows}


@pytest.mark.anyio
async def test_pg_bench_reports_every_figure_beside_pgqueuer(
    tmp_path: Path, pg_database: str
) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "bench", "--quick", "--sizes", str(N), "--only", "postgres"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SHEPHERD_BENCH_PG": SERVER},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped"] == {}
    got = {r["metric"]: r for r in report["results"] if r["scenario"] == "postgres"}
    expected = {f"enqueue_{k}.{s}" for k in ("single", "batch") for s in SYSTEMS}
    expected |= {
        f"{m}.{s}.w{w}"
        for m in ("drain", "e2e", "pickup_p50", "pickup_p99")
        for s in SYSTEMS
        for w in (1, 2, 3)
    }
    assert set(got) == expected
    for name, r in got.items():
        assert r["value"] > 0, name
        assert r["n"] == N, name
        if ".pgqueuer" in name:
            assert r["ratio_to"] is None, name
        else:
            assert r["ratio_to"] == "postgres:" + name.replace(name.split(".")[1], "pgqueuer"), name
            assert r["ratio"] is not None and r["ratio"] > 0, name
    scratch = re.search(r"scratch database (\S+)", proc.stderr)
    assert scratch is not None, proc.stderr[-2000:]
    assert scratch.group(1) not in await _databases()  # dropped at the end
