"""The spool under SIGKILL, with the real daemon (``python -m shepherd run``): files
dropped in rounds, the daemon killed at random points of ingest several times, then
restarted; every file became exactly one dispatch (its id the dispatch's producer key)
and no file remains, none rejected. Also: a spool directory that cannot be used stops
the daemon at start with a named error (exit 2 / 3) and touches nothing.

No fixed sleeps: the kill points are random delays after the daemon took its lock,
and everything else polls with a deadline. The seed is printed (``SPOOL_SEED`` replays).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shepherd.actors.spool import formats
from shepherd.runtime._cli_store import daemon_pid
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def eventually(predicate: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    return wait_until(predicate, timeout=timeout, what=what)


class Daemon:
    """A config with ``[spool]`` and a shell job ``agent`` (``true``), the daemon."""

    def __init__(self, tmp: Path, spool: str = "spool", max_batch: int = 8) -> None:
        self.tmp = tmp
        self.db = str(tmp / "spool.db")
        self.spool = tmp / spool
        self.config = tmp / "shepherd.toml"
        self.config.write_text(
            'database = "spool.db"\nconcurrency = 8\nshutdown_grace = "1s"\n'
            f'[spool]\ndir = "{spool}"\ndefault_job = "agent"\nmax_batch = {max_batch}\n'
            '[[jobs]]\nname = "agent"\nexecutor = "shell"\ntarget = "true"\n'
        )
        self.log = tmp / "daemon.log"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "shepherd", "--config", str(self.config), "run"]
        with self.log.open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.tmp)
        self.procs.append(proc)
        eventually(
            lambda: proc.poll() is not None or daemon_pid(self.db) == proc.pid,
            what="the daemon to take its lock",
        )
        assert proc.poll() is None, f"the daemon exited early:\n{self.log.read_text()}"
        return proc

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if not os.path.exists(self.db):
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return conn.execute(sql).fetchall()

    def pending(self) -> list[str]:
        return [n for n in os.listdir(self.spool) if formats.is_pending_name(n)]

    def drop(self, n: int) -> list[str]:
        self.spool.mkdir(exist_ok=True)
        ids = []
        for i in range(n):
            ev = formats.build_event(
                {"version": 1, "payload": {"kind": "agentTurn", "message": f"turn {i}"}},
                time.time(),
            )
            if i % 3 == 0:
                ev["priority"] = random.choice(formats.OPENCLAW_PRIORITIES)
            formats.write_event(self.spool, ev)
            ids.append(ev["id"])
        return ids


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    yield d
    for proc in d.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_sigkill_at_random_points_neither_loses_nor_doubles_a_file(daemon: Daemon) -> None:
    seed = int(os.environ.get("SPOOL_SEED", random.randrange(1 << 30)))
    print(f"SPOOL_SEED={seed}")
    rng = random.Random(seed)
    ids = daemon.drop(200)  # present at the first start
    kills = 0
    states: list[tuple[int, int]] = []
    for _ in range(6):
        proc = daemon.start()
        ids += daemon.drop(40)  # arrivals while it ingests
        time.sleep(rng.uniform(0.0, 0.25))  # the random kill point (not a wait for a state)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        try:
            committed = daemon.query("SELECT count(*) FROM dispatches")[0][0]
        except sqlite3.OperationalError:  # killed after taking its lock, before the schema
            committed = 0
        states.append((committed, len(ids) - len(daemon.pending())))
    print("kills (dispatches, files gone / dropped):", states, len(ids))
    # some kill fell in the middle of ingest: files left behind, dispatches committed
    assert any(0 < gone < len(ids) or committed > gone for committed, gone in states), states
    proc = daemon.start()
    eventually(lambda: not daemon.pending(), what="every file ingested")
    rows = daemon.query("SELECT producer_key, count(*) FROM dispatches GROUP BY producer_key")
    counts = dict(rows)
    assert len(ids) == 440 and kills == 6
    assert sorted(counts) == sorted(ids), "a file was lost, or a dispatch has no file"
    assert set(counts.values()) == {1}, "a file became two dispatches"
    assert os.listdir(daemon.spool / formats.REJECTED_DIR) == []
    leftovers = [n for n in os.listdir(daemon.spool) if n != formats.REJECTED_DIR]
    assert leftovers == [], leftovers  # no temp file left behind either
    status = subprocess.run(
        [sys.executable, "-m", "shepherd", "--config", str(daemon.config), "status", "--json"],
        capture_output=True, text=True, timeout=60, cwd=daemon.tmp,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    spool = json.loads(status.stdout)["spool"]
    assert (spool["pending"], spool["rejected"]) == (0, 0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_an_unusable_spool_directory_stops_the_daemon_at_start(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("a file where the directory should be")
    d = Daemon(tmp_path)
    argv = [sys.executable, "-m", "shepherd", "--config", str(d.config), "run"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "spool.dir" in done.stderr and "not a directory" in done.stderr
    assert (tmp_path / "spool").read_text() == "a file where the directory should be"
    assert d.query("SELECT count(*) FROM dispatches") in ([], [(0,)])
