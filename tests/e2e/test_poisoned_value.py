"""End to end: one out-of-range value never poisons the daemon.

- A value in config ``[[jobs]]`` that SQLite cannot store (10**20) stops ``run`` at
  start with exit 2 naming the field: no crash loop, nothing stored.
- A job stored with such a value (a row from before the bound existed) fails only its
  own commits: a healthy ``every 1s`` job keeps getting its dispatches, and
  ``run --for`` exits on time.

The real daemon (``python -m shepherd run``) as a subprocess; polling with deadlines.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from shepherd.store.models import JobSpec, RetryPolicy, Seconds, encode_json
from shepherd.store.ops import SaveJob
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.e2e

HUGE = 10**20


def _argv(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "shepherd", "--config", str(config), *args]


def _config(tmp: Path, extra: str = "") -> Path:
    path = tmp / "shepherd.toml"
    path.write_text(
        'database = "e2e.db"\nconcurrency = 4\nshutdown_grace = "2s"\nlog_level = "INFO"\n' + extra
    )
    return path


def test_a_config_job_out_of_bounds_stops_run_at_start_naming_the_field(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[[jobs]]\nname = "bad"\nexecutor = "shell"\ntarget = "true"\nevery = "1s"\n'
        f"retry = {{ max_attempts = {HUGE} }}\n",
    )
    started = time.monotonic()
    proc = subprocess.run(
        _argv(config, "run", "--for", "30s"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "jobs[0].retry.max_attempts" in proc.stderr and "1000" in proc.stderr
    assert time.monotonic() - started < 20  # refused at start, not after a crash loop
    assert not (tmp_path / "e2e.db").exists()  # nothing stored


async def _store_poisoned_job(db: str, now: float) -> None:
    """A job row as an older version stored it, before retry.max_attempts had bounds."""
    spec = JobSpec(
        name="poisoned",
        executor="shell",
        target="true",
        every=Seconds(1.0),
        retry=RetryPolicy(max_attempts=HUGE),
    )
    store = await SqliteStore.open(db)
    try:
        await store.apply_one(
            SaveJob(
                name=spec.name,
                executor=spec.executor,
                enabled=True,
                spec=encode_json(spec),
                next_run_at=now + 0.5,
                now=now,
                anchor=now - 0.5,
            )
        )
    finally:
        await store.close()


def test_a_stored_value_out_of_range_fails_alone_and_run_for_exits_on_time(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    db = str(tmp_path / "e2e.db")
    add = subprocess.run(
        _argv(config, "jobs", "add", "tick", "--executor", "shell", "--target", "true",
              "--every", "1s"),
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    anyio.run(_store_poisoned_job, db, time.time())

    log = tmp_path / "daemon.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _argv(config, "run", "--for", "6s"), stdout=out, stderr=out, cwd=tmp_path
        )
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"run --for 6s did not exit:\n{log.read_text()}") from None
    elapsed = time.monotonic() - started
    text = log.read_text()
    assert code == 0, f"exit {code}:\n{text}"
    assert elapsed < 6 + 8, f"run --for 6s took {elapsed:.1f}s"

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        counts = dict(
            conn.execute(
                "SELECT j.name, COUNT(d.id) FROM jobs j LEFT JOIN dispatches d"
                " ON d.job_id = j.id GROUP BY j.name"
            ).fetchall()
        )
        running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()
    assert counts.get("poisoned") == 0  # its commits failed, and only they did
    assert counts.get("tick", 0) >= 4, (counts, text)  # ~6 slots in 6 s
    assert running[0] == 0
    assert "OverflowError" in text  # the failure is logged, naming what happened
