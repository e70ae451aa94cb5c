"""``shepherd status`` shows the spool directory's pending and rejected counts, counted
in the directory (no daemon needed), through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shepherd.actors.spool import formats


def shepherd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEPHERD_")}
    argv = [sys.executable, "-m", "shepherd", "--config", str(config), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=config.parent, env=env
    )


def test_status_counts_pending_and_rejected_files(tmp_path: Path) -> None:
    config = tmp_path / "shepherd.toml"
    config.write_text('database = "s.db"\n[spool]\ndir = "in"\n')
    done = shepherd(config, "jobs", "add", "agent", "--executor", "shell", "--target", "true")
    assert done.returncode == 0, done.stderr
    spool = tmp_path / "in"
    (spool / formats.REJECTED_DIR).mkdir(parents=True)
    for _ in range(2):
        ev = formats.build_event(
            {"version": 1, "payload": {"kind": "agentTurn", "message": "x"}}, 1.0
        )
        formats.write_event(spool, ev)
    (spool / "skip.json.tmp.abc").write_text("{")  # a writer's temp file: not counted
    (spool / formats.REJECTED_DIR / "bad.json").write_text("{")
    (spool / formats.REJECTED_DIR / "bad.json.error.json").write_text("{}")
    done = shepherd(config, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spool"] == {"dir": str(spool), "pending": 2, "rejected": 1}
    done = shepherd(config, "status")
    assert f"{spool}: 2 pending, 1 rejected" in done.stdout
