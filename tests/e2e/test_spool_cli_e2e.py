"""End to end: ``shepherd spool ...`` (real CLI subprocesses) feeding the real daemon
(``python -m shepherd run``) through the spool directory.

- an event written by ``spool enqueue`` while the daemon runs becomes a dispatch of the
  spool's default job (a shell job here) and runs; the file is gone afterwards;
- one written while no daemon runs is taken when the daemon starts;
- a bad file shows in ``spool status`` / ``spool rejected list`` with its error, and
  ``spool rejected retry`` of the corrected file gets it run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shepherd.runtime._cli_store import daemon_pid
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def eventually(predicate: Callable[[], Any], *, timeout: float = 15.0, what: str = "") -> Any:
    return wait_until(predicate, timeout=timeout, what=what)


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = str(tmp / "e2e.db")
        self.spool = tmp / "spool"
        self.out = tmp / "out.txt"
        self.config = tmp / "shepherd.toml"
        self.config.write_text(
            'database = "e2e.db"\nshutdown_grace = "5s"\n'
            '[spool]\ndir = "spool"\ndefault_job = "turn"\n'
            "[[jobs]]\n"
            'name = "turn"\nexecutor = "shell"\n'
            f'target = \'printf "%s\\n" "$SHEPHERD_PAYLOAD" >> {self.out}\'\n'
        )
        self.log = tmp / "daemon.log"
        self.daemon: subprocess.Popen[bytes] | None = None

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "shepherd", "--config", str(self.config), *args]

    def cli(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHEPHERD_")}
        proc = subprocess.run(
            self._argv(*args), capture_output=True, text=True, timeout=60, cwd=self.tmp, env=env
        )
        assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr}"
        return proc.stdout

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.daemon = subprocess.Popen(self._argv("run"), stdout=log, stderr=log, cwd=self.tmp)
        proc = self.daemon
        eventually(
            lambda: proc.poll() is not None or daemon_pid(self.db) == proc.pid,
            what="the daemon to take its lock",
        )
        assert proc.poll() is None, f"the daemon exited early:\n{self.log.read_text()}"

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def ran(self, message: str) -> bool:
        return any(message in json.dumps(p) for p in self.lines())

    def pending(self) -> list[str]:
        return sorted(n for n in os.listdir(self.spool) if n.endswith(".json"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    if e.daemon is not None and e.daemon.poll() is None:
        e.daemon.kill()
        e.daemon.wait(timeout=10)


def test_spool_enqueue_runs_through_the_daemon(env: Env) -> None:
    # written with no daemon: taken when it starts
    early = env.cli("spool", "enqueue", "-m", "before start").strip()
    assert env.pending() == [f"{early}.json"]
    env.start()
    eventually(lambda: env.ran("before start"), what="the early event to run")

    event_id = env.cli("spool", "enqueue", "-m", "hello spool", "--priority", "high").strip()
    eventually(lambda: env.ran("hello spool"), what="the event to run")
    eventually(lambda: env.pending() == [], what="the files to be removed")
    status = json.loads(env.cli("spool", "status", "--json"))
    assert status["pending"] == 0 and status["rejected"] == 0
    runs = json.loads(env.cli("runs", "list", "--json"))
    assert len(runs) == 2 and all(r["status"] == "ok" for r in runs), runs
    assert event_id != early


def test_rejected_file_is_listed_and_retried_after_a_fix(env: Env) -> None:
    env.start()
    event_id = env.cli("spool", "enqueue", "-m", "fixed").strip()
    eventually(lambda: env.ran("fixed"), what="the first run")
    good = json.loads(env.cli("runs", "list", "--json"))[0]
    assert good["status"] == "ok"

    name = "0b3c2f5e-8f4e-4d5b-9a3e-2f1e0d9c8b7a.json"
    bad = {"version": 2, "id": name.removesuffix(".json")}
    tmp = env.spool / f"{name}.tmp.1"
    tmp.write_text(json.dumps(bad))
    tmp.rename(env.spool / name)
    rejected = env.spool / "rejected"
    eventually(lambda: (rejected / name).exists(), what="the bad file to be rejected")
    rows = eventually(
        lambda: json.loads(env.cli("spool", "rejected", "list", "--json"))["rejected"],
        what="the rejected listing",
    )
    assert [r["name"] for r in rows] == [name] and "version" in rows[0]["error"]
    assert json.loads(env.cli("spool", "status", "--json"))["rejected"] == 1

    event = json.loads(
        env.cli("spool", "enqueue", "-m", "second try", "--dir", str(env.tmp / "x"), "--json")
    )["event"]
    event["id"] = name.removesuffix(".json")
    (rejected / name).write_text(json.dumps(event))  # the operator fixes the file
    env.cli("spool", "rejected", "retry", name)
    eventually(lambda: env.ran("second try"), what="the retried file to run")
    assert json.loads(env.cli("spool", "status", "--json"))["rejected"] == 0
    assert event_id
