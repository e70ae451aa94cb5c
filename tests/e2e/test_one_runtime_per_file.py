"""One runtime per database file, whatever the name it is given: real daemons
(``python -m shepherd run``) as subprocesses.

A second daemon given another name of the file being served (a symlink to it, relative
to the working directory; its path through a symlinked directory; a hard link) is
refused, exit 3 "already served by a runtime (pid …)", and the first one's live run and
its process are untouched: the second never gets as far as recovery, which would kill
that process's group as an orphan's. Status and doctor under the other name see the
daemon serving; once the first daemon stops, a daemon starts under the other name.

No fixed sleeps: everything polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shepherd.actors.socket_path import FILE_LOCK
from shepherd.runtime._cli_store import daemon_pid
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def eventually(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "") -> Any:
    return wait_until(predicate, timeout=timeout, what=what)


class Files:
    """``real.db`` in a temp directory, the CLI and daemons run from that directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = str(tmp / "real.db")
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.log = tmp / "daemon.log"
        # a stop cancels the long run at once instead of waiting out the default grace
        self.env = {**os.environ, "SHEPHERD_SHUTDOWN_GRACE": "100ms"}

    def argv(self, db: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "shepherd", "--database", db, *args]

    def cli(self, db: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(db, *args),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.tmp,
            env=self.env,
        )

    def cli_json(self, db: str, *args: str) -> Any:
        done = self.cli(db, *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def serving(self, db: str) -> int | None:
        pid: int | None = self.cli_json(db, "status")["daemon"]["pid"]
        return pid

    def start(self, db: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            argv = self.argv(db, "run")
            proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.tmp, env=self.env)
        self.daemons.append(proc)
        eventually(
            lambda: proc.poll() is not None or daemon_pid(os.path.join(self.tmp, db)) == proc.pid,
            what="the daemon's lock",
        )
        assert proc.poll() is None, self.log.read_text()
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, self.log.read_text()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    made = Files(tmp_path)
    yield made
    for proc in made.daemons:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _sleeps(marker: str) -> list[int]:
    """The ``sleep <marker>`` processes (not the shell that starts one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", marker.encode()]:
                found.append(int(entry.name))
    return found


def _other_name(files: Files, spelling: str) -> str:
    """Another name of ``files.db``, spelled as ``spelling`` says."""
    tmp = files.tmp
    if spelling == "symlink":
        os.symlink("real.db", tmp / "alias.db")
        return "alias.db"  # relative to the daemon's working directory, through a link
    if spelling == "linked directory":
        os.symlink(tmp, tmp.parent / f"{tmp.name}-link")
        return str(tmp.parent / f"{tmp.name}-link" / "real.db")
    assert spelling == "hard link"
    os.link(files.db, tmp / "hard.db")
    return str(tmp / "hard.db")


SPELLINGS = [
    "symlink",
    "linked directory",
    pytest.param(
        "hard link",
        marks=pytest.mark.skipif(not FILE_LOCK, reason="the file's own flock is Linux's"),
    ),
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_second_daemon_under_another_name_is_refused_and_the_live_run_survives(
    files: Files, spelling: str
) -> None:
    marker = f"60.{uuid.uuid4().int % 10**8:08d}"  # `sleep 60.xxxxxxxx`: unique argv
    added = files.cli(files.db, "jobs", "add", "long", "--executor", "shell",
                      "--target", f"sleep {marker}")  # fmt: skip
    assert added.returncode == 0, added.stderr
    first = files.start(files.db)
    files.cli_json(files.db, "enqueue", "long")
    sleeper = eventually(lambda: _sleeps(marker), what="the long job's process")
    other = _other_name(files, spelling)

    second = files.cli(other, "run", "--for", "5s")

    assert second.returncode == 3, second.stderr
    assert "already served by a runtime" in second.stderr, second.stderr
    assert f"pid {first.pid}" in second.stderr, second.stderr
    assert "daemon.ready" not in second.stderr and "killed" not in second.stderr
    assert first.poll() is None
    assert _sleeps(marker) == sleeper  # the run's process was not touched
    if spelling == "hard link":  # two names, two WALs: refused under both, nothing written
        direct = (["status"], ["jobs", "add", "b", "--target", "x"])  # the file itself
        for name, argv in [
            (other, ["enqueue", "long"]),
            *((n, a) for n in (other, files.db) for a in direct),
        ]:
            got = files.cli(name, *argv)
            assert got.returncode == 2, got.stderr
            assert "has 2 names (hard links)" in got.stderr, got.stderr
        os.unlink(other)  # one name again
    runs = files.cli_json(files.db, "runs", "list", "--job", "long")
    assert [r["status"] for r in runs] == ["running"]
    assert [j["name"] for j in files.cli_json(files.db, "jobs", "list")] == ["long"]
    if spelling == "hard link":
        files.stop(first)
        return
    # status and doctor under the other name see the daemon serving the file
    assert files.serving(other) == first.pid
    doctor = json.loads(files.cli(other, "doctor", "--json").stdout)
    assert doctor["daemon"]["serving"] is True and doctor["daemon"]["pid"] == first.pid
    assert doctor["lock"]["held"] is True and doctor["lock"]["pid"] == first.pid

    files.stop(first)  # lets its run be cancelled and requeued, then lets go of the file
    assert files.serving(other) is None
    then = files.start(other)  # the lock was released: the other name serves now
    assert files.serving(files.db) == then.pid
    files.stop(then)
