"""End to end: a config ``[[jobs]]`` one-shot (``at = ...``) runs once, and a daemon
restart with the same config does not fire it again (the stored, disabled state wins
over the config's re-add)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shepherd.runtime._cli_store import daemon_pid
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def eventually(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "") -> Any:
    return wait_until(predicate, timeout=timeout, what=what)


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:  # only the daemons this test started
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize("when", ["soon", "late", "relative"])
def test_config_one_shot_does_not_fire_again_after_a_restart(
    tmp_path: Path, daemons: list[subprocess.Popen[bytes]], when: str
) -> None:
    db = str(tmp_path / "e2e.db")
    if when == "relative":
        at = "in 1s"
    else:  # "late": more than the 60 s misfire grace past by the restart
        ahead = 1.0 if when == "soon" else -55.0  # 5 s for the first daemon's start
        at_ts = time.time() + ahead
        at = datetime.fromtimestamp(at_ts, UTC).isoformat()
    config = tmp_path / "shepherd.toml"
    config.write_text(
        'database = "e2e.db"\nshutdown_grace = "5s"\n\n'
        f'[[jobs]]\nname = "once"\nexecutor = "shell"\ntarget = "true"\nat = "{at}"\n'
    )
    log = tmp_path / "daemon.log"

    def query(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute(sql).fetchall()

    def job() -> tuple[int, float | None, float]:
        enabled, next_run_at, updated_at = query(
            "SELECT enabled, next_run_at, updated_at FROM jobs WHERE name = 'once'"
        )[0]
        return int(enabled), next_run_at, float(updated_at)

    def start() -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "shepherd", "--config", str(config), "run"]
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=out, cwd=tmp_path)
        daemons.append(proc)
        eventually(
            lambda: proc.poll() is not None or daemon_pid(db) == proc.pid,
            what="the daemon to take its lock",
        )
        assert proc.poll() is None, f"the daemon exited early:\n{log.read_text()}"
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()

    def finished() -> bool:
        try:  # the daemon takes its lock before it creates the schema
            rows = query("SELECT status FROM dispatches")
        except sqlite3.OperationalError:
            return False
        return rows == [("done",)] and job()[0] == 0

    first = start()
    eventually(finished, what="the one-shot to run and be disabled")
    stop(first)
    assert query("SELECT COUNT(*) FROM runs")[0][0] == 1
    stopped_at = job()[2]

    if when == "late":  # the restart comes after the misfire grace has passed
        eventually(lambda: time.time() > at_ts + 61.0, timeout=30, what="the grace to pass")
    second = start()  # the same config: the daemon adds the job again
    eventually(lambda: job()[2] > stopped_at, what="the restart to re-add the config's job")
    enabled, next_run_at, _ = job()
    assert (enabled, next_run_at) == (0, None), "the re-added one-shot is armed again"
    stop(second)
    assert query("SELECT COUNT(*) FROM dispatches")[0][0] == 1
    assert query("SELECT COUNT(*) FROM runs")[0][0] == 1, query("SELECT * FROM runs")
