"""End to end: ``shepherd backup`` against the real daemon while jobs run, then
``shepherd restore`` into a new path and a comparison of the copy with the original.

The daemon runs a scheduled shell job every 20 ms and a thread enqueues through the CLI
meanwhile, so commits go on during the copy. The copy must pass the full integrity
check, hold every dispatch committed before the backup started (with the state it had
then or later), and carry the same schema version. ``restore`` refuses a database a
daemon serves and an existing target without ``--force``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, eventually
from tests.e2e.test_daemon_kill import make_env as make_env  # the fixture

pytestmark = pytest.mark.e2e


def _run(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env._argv(*args), capture_output=True, text=True, timeout=120, cwd=env.tmp
    )


def test_backup_while_jobs_run_then_restore_and_compare(make_env: Callable[..., Env]) -> None:
    env = make_env()
    env.cli("jobs", "add", "tick", "--executor", "shell", "--target", "true", "--every", "0.02")
    env.cli("jobs", "add", "work", "--executor", "shell", "--target", "echo hi")
    for _ in range(3):
        env.cli("enqueue", "work", "--payload", '{"pad": "' + "x" * 50_000 + '"}')
    daemon = env.start()
    eventually(lambda: env.query("SELECT COUNT(*) FROM runs")[0][0] >= 10, what="runs")

    stop = threading.Event()
    enqueued: list[int] = []

    def stream() -> None:
        while not stop.is_set():
            enqueued.append(int(env.cli("enqueue", "work").stdout.split()[-1]))

    feeder = threading.Thread(target=stream)
    feeder.start()
    try:
        eventually(lambda: len(enqueued) >= 2, what="the stream to run")
        before = dict(env.query("SELECT id, status FROM dispatches"))
        backup = env.tmp / "copy.db"
        done = _run(env, "backup", str(backup))
        assert done.returncode == 0, done.stderr
        count_at_end = len(enqueued)
        eventually(lambda: len(enqueued) > count_at_end, what="enqueues after the backup")
    finally:
        stop.set()
        feeder.join(timeout=60)
    after = env.query("SELECT MAX(id) FROM dispatches")[0][0]
    assert after > max(before), "the daemon kept committing"

    # a second backup to the same path is refused without --force
    again = _run(env, "backup", str(backup))
    assert again.returncode == 1 and "--force" in again.stderr
    # restoring over the served database is refused, and it is untouched
    served = _run(env, "restore", str(backup), "--to", env.db, "--force")
    assert served.returncode == 3 and "served" in served.stderr, served.stderr
    assert daemon.poll() is None

    restored = env.tmp / "restored.db"
    out = _run(env, "restore", str(backup), "--to", str(restored))
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(restored) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = dict(copy.execute("SELECT id, status FROM dispatches").fetchall())
        version = copy.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    missing = sorted(set(before) - set(rows))
    assert not missing, f"dispatches committed before the backup are missing: {missing[:5]}"
    for dispatch_id, status in before.items():  # a final state stays as it was
        if status in ("done", "dead", "cancelled"):
            assert rows[dispatch_id] == status, dispatch_id
    assert version == env.query("SELECT MAX(version) FROM schema_version")[0][0]
    doctor = _run(env, "--database", str(restored), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    # an existing target without --force is refused and left as it is
    kept = restored.read_bytes()
    refused = _run(env, "restore", str(backup), "--to", str(restored))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert restored.read_bytes() == kept


def test_a_backup_to_a_directory_that_cannot_be_written_names_it(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    env = make_env()
    env.cli("jobs", "add", "work", "--executor", "shell", "--target", "true")
    (tmp_path / "plain").write_text("a file, not a directory")
    for where in (tmp_path / "missing" / "b.db", tmp_path / "plain" / "b.db"):
        out = _run(env, "backup", str(where))
        assert out.returncode == 3, out.stderr
        assert str(where) in out.stderr and "Traceback" not in out.stderr
    left = [p.name for p in tmp_path.rglob("*") if "b.db" in p.name]
    assert left == [], left


def test_backup_progress_shows_on_a_terminal_only(make_env: Callable[..., Env]) -> None:
    env = make_env()
    env.cli("jobs", "add", "work", "--executor", "shell", "--target", "true")
    piped = _run(env, "backup", str(env.tmp / "a.db"))
    assert piped.returncode == 0 and piped.stderr == ""  # stderr is not a terminal
    forced = subprocess.run(
        env._argv("backup", str(env.tmp / "b.db")),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env.tmp,
        env={**os.environ, "SHEPHERD_PROGRESS": "1"},
    )
    assert forced.returncode == 0, forced.stderr
    assert "backup [" in forced.stderr and "100%" in forced.stderr
    assert forced.stdout.startswith(f"backup {env.tmp / 'b.db'}: ")
