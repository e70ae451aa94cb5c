"""``python -m shepherd import ocs`` as a real subprocess: a daemon serving the shepherd
database runs what the import queued at once (it is woken, no restart); an OCS
database another process holds open is refused (exit 2) and never written."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, eventually, make_env  # noqa: F401 (fixture)
from tests.ocs_import.fixture import OcsDb, realistic, text

pytestmark = pytest.mark.e2e


def _import(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shepherd", "--config", str(env.config), "import", "ocs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env.tmp,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_running_daemon_picks_up_what_the_import_queued(
    make_env: Callable[..., Env],  # noqa: F811
) -> None:
    env = make_env()
    marker = env.tmp / "ran.txt"
    ocs = env.tmp / "ocs.db"
    db = OcsDb(str(ocs))
    job = db.job(
        "touch it",
        session_target="shell",
        payload_message=f"echo ran >> {marker}",
        schedule_cron="0 0 1 1 *",
        next_run_at=text(time.time() + 86400),
    )
    db.dispatch(job, "manual", scheduled_for=text(time.time() - 1))  # a pending run-now
    db.close()
    before = _digest(ocs)
    env.cli("jobs", "add", "other", "--executor", "shell", "--target", "true")  # the db exists
    env.start()
    done = _import(env, str(ocs))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created      'touch it' -> touch-it  [shell]" in done.stdout
    eventually(lambda: marker.exists(), what="the daemon to run the imported dispatch")
    assert env.query("SELECT kind, status FROM dispatches WHERE job_name = 'touch-it'") in (
        [("run_now", "done")],
        [("run_now", "running")],
    )
    assert _digest(ocs) == before  # the OCS file is never written


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE jobs SET name = name")
    print("holding", flush=True)
    sys.stdin.readline()
    """
)


def test_a_database_a_running_ocs_holds_is_refused(
    make_env: Callable[..., Env],  # noqa: F811
) -> None:
    env = make_env()
    with env.config.open("a") as f:  # agent and event jobs need a gateway
        f.write('[gateway]\nurl = "http://127.0.0.1:9"\n')
    ocs = env.tmp / "ocs.db"
    realistic(str(ocs), time.time())
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ocs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        refused = _import(env, str(ocs), "--dry-run")
        assert refused.returncode == 2
        assert f"in use by process {holder.pid}" in refused.stderr
        assert not Path(env.db).exists()  # nothing created, nothing stored
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=10)
    done = _import(env, str(ocs))  # stopped: the import goes ahead
    assert done.returncode == 1, done.stderr  # 1: the fixture holds unmappable fields
    assert env.query("SELECT COUNT(*) FROM jobs") == [(36,)]


KILLED = textwrap.dedent(
    """
    import os, sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(
        "INSERT INTO jobs (id, name, schedule_cron, payload_message, session_target,"
        " delivery_mode) VALUES ('late', 'written last', '0 9 * * *', 'true', 'shell', 'none')"
    )
    os._exit(0)  # like a SIGKILL: no checkpoint, the commit lives in the WAL only
    """
)


def test_commits_left_in_the_wal_by_a_killed_ocs_are_read(
    make_env: Callable[..., Env],  # noqa: F811
) -> None:
    env = make_env()
    ocs = env.tmp / "ocs.db"
    OcsDb(str(ocs)).close()
    subprocess.run([sys.executable, "-c", KILLED, str(ocs)], check=True, timeout=30)
    assert Path(f"{ocs}-wal").stat().st_size > 0
    before = _digest(ocs)
    done = _import(env, str(ocs))
    assert done.returncode == 0, done.stdout + done.stderr
    assert env.query("SELECT name FROM jobs") == [("written-last",)]
    assert _digest(ocs) == before
