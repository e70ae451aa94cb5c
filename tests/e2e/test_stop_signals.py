"""Only signals count as signals: a SIGTERM that arrives while a stop begun by
``--for`` (or ``--exit-when-idle``) drains is the first signal, a graceful stop (exit
0), not the second one that cancels at once (exit 130, ``forced=yes``)."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_signal_action_counts_signals_only() -> None:
    from shepherd.runtime._cli_daemon import signal_action

    assert signal_action(1) == "shutdown"
    assert signal_action(2) == "cancel-now"
    assert signal_action(3) == "cancel-now"


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"the daemon exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} in:\n{log.read_text()}"
        time.sleep(0.01)


def _wait_until_running(db: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            sql = "SELECT COUNT(*) FROM runs WHERE status = 'running'"
            if conn.execute(sql).fetchone()[0]:
                return
        assert proc.poll() is None, f"the daemon exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no run started:\n{log.read_text()}"
        time.sleep(0.01)


def test_a_sigterm_during_a_deadline_stop_is_a_graceful_stop(tmp_path: Path) -> None:
    db = str(tmp_path / "sig.db")
    config = tmp_path / "shepherd.toml"
    config.write_text('shutdown_grace = "2s"\n')

    def cli(*args: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "shepherd", "--config", str(config), "--database", db]
        return subprocess.Popen([*argv, *args], stdout=log, stderr=log)

    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        add = cli("jobs", "add", "slow", "--executor", "shell", "--target", "sleep 30")
        assert add.wait(timeout=60) == 0
        assert cli("enqueue", "slow").wait(timeout=60) == 0
        daemon = cli("run", "--for", "2s")
        try:
            _wait_until_running(db, daemon, log_path)
            # the deadline stop drains the running run for shutdown_grace (2 s)
            _wait_for(log_path, "daemon.stopping", daemon)
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(timeout=10)
    logs = log_path.read_text()
    assert "signal.received signal=SIGTERM action=shutdown" in logs
    assert "forced=yes" not in logs and "cancel-now" not in logs
    assert code == 0, logs
