"""Storage faults through the real CLI and daemon (subprocesses): a damaged page in the
middle of a database is found before anything writes (daemon start and every CLI
command exit 3 naming the table, the file is byte-identical afterwards), a read-only
command never writes to a healthy file, a full disk at daemon start is ``DiskFull``
(exit 3), a directory given as the database is a clear bad-input error (exit 2), and
``doctor`` reports health, the lock holder and the daemon.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from shepherd.runtime import Config, EnqueueRequest, JobSpec, Runtime
from shepherd.runtime._cli_store import daemon_pid
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def shepherd(db: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "shepherd", "--database", db, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def eventually(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "") -> Any:
    return wait_until(predicate, timeout=timeout, what=what)


def make_database(db: str) -> None:
    """A real database: two jobs and 3000 queued dispatches (far in the future)."""

    async def fill() -> None:
        async with Runtime.open(Config(database=db)) as rt:
            await rt.add_job(JobSpec(name="a", executor="shell", target="true"))
            await rt.add_job(JobSpec(name="b", executor="shell", target="true"))
            later = time.time() + 10 * 86400
            reqs = [
                EnqueueRequest(job="a", payload={"n": i, "pad": "x" * 100}, not_before=later)
                for i in range(3000)
            ]
            await rt.enqueue_many(reqs)
            await rt.disable("a")  # nothing of it runs (an enqueue to a disabled job is refused)

    anyio.run(fill)


def damage_middle_of(db: str, table: str) -> int:
    """Scribble over a leaf page in the middle of ``table``'s btree; its page number."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            rows = conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            ).fetchall()
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat virtual table")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        total = conn.execute("PRAGMA page_count").fetchone()[0]
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    page = rows[len(rows) // 2][0]
    assert 2 < page < total  # in the middle of the file, not the header or the last page
    with open(db, "r+b") as f:
        f.seek((page - 1) * page_size + 100)
        f.write(b"\xa5" * 2000)
    return page


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[str, str]:
    db = str(tmp_path / "damaged.db")
    make_database(db)
    damage_middle_of(db, "dispatches")
    return db, digest(db)


@pytest.mark.parametrize(
    "command",
    [("status",), ("enqueue", "b"), ("runs", "list"), ("jobs", "list"), ("dlq", "list")],
)
def test_damaged_pages_are_refused_by_the_cli_before_it_writes(
    damaged: tuple[str, str], command: tuple[str, ...]
) -> None:
    db, before = damaged
    done = shepherd(db, *command)
    assert done.returncode == 3, done.stderr
    assert "DatabaseCorrupt" in done.stderr and "table dispatches" in done.stderr
    assert "Traceback" not in done.stderr
    assert digest(db) == before  # nothing was written (the WAL was not checkpointed in)


def test_a_daemon_does_not_start_on_damaged_pages(damaged: tuple[str, str]) -> None:
    db, before = damaged
    done = shepherd(db, "run", "--exit-when-idle", "--for", "20s")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "DatabaseCorrupt" in done.stderr and "table dispatches" in done.stderr
    assert digest(db) == before


@pytest.mark.parametrize("setting", ["full", "bounded", "auto"])
def test_every_start_check_but_off_refuses_damaged_pages_at_daemon_start(
    damaged: tuple[str, str], setting: str
) -> None:
    db, before = damaged
    argv = [sys.executable, "-m", "shepherd", "--database", db, "run", "--exit-when-idle"]
    env = {**os.environ, "SHEPHERD_START_CHECK": setting}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "DatabaseCorrupt" in done.stderr and "table dispatches" in done.stderr
    assert "daemon.ready" not in done.stderr
    assert digest(db) == before


def test_doctor_checks_in_full_whatever_start_check_says(damaged: tuple[str, str]) -> None:
    db, before = damaged
    argv = [sys.executable, "-m", "shepherd", "--database", db, "doctor", "--json"]
    env = {**os.environ, "SHEPHERD_START_CHECK": "off"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 3, done.stderr
    assert "table dispatches" in json.loads(done.stdout)["integrity"]["damaged"]
    assert digest(db) == before


def test_doctor_reports_the_damaged_table_and_exits_3(damaged: tuple[str, str]) -> None:
    db, before = damaged
    done = shepherd(db, "doctor", "--json")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is False
    assert report["integrity"]["ok"] is False
    assert "table dispatches" in report["integrity"]["damaged"]
    assert "table jobs" not in report["integrity"]["damaged"]
    assert digest(db) == before


def test_a_read_only_command_leaves_a_healthy_file_byte_identical(tmp_path: Path) -> None:
    db = str(tmp_path / "ok.db")
    make_database(db)
    before = digest(db)
    for command in (("status",), ("runs", "list"), ("jobs", "list"), ("dlq", "list")):
        done = shepherd(db, *command)
        assert done.returncode == 0, done.stderr
        assert digest(db) == before, f"{command} wrote to the database"


def test_doctor_on_a_healthy_file_with_and_without_a_daemon(tmp_path: Path) -> None:
    db = str(tmp_path / "ok.db")
    make_database(db)
    done = shepherd(db, "doctor", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is True and report["integrity"]["ok"] is True
    assert report["schema_version"] == report["runtime_schema_version"]
    assert report["wal_bytes"] == 0  # the runtime truncated the WAL on its way out
    assert report["lock"] == {**report["lock"], "held": False}
    assert report["daemon"]["serving"] is False
    assert report["daemon"]["instance"]["stopped_at"] is not None

    log = (tmp_path / "daemon.log").open("wb")
    argv = [sys.executable, "-m", "shepherd", "--database", db, "run"]
    daemon = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        eventually(lambda: daemon_pid(db) == daemon.pid, what="the daemon's lock")
        eventually(
            lambda: json.loads(shepherd(db, "doctor", "--json").stdout)["daemon"][
                "wake_socket_exists"
            ],
            what="the wake socket",
        )
        done = shepherd(db, "doctor", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["lock"]["held"] is True and report["lock"]["pid"] == daemon.pid
        assert report["daemon"]["serving"] is True and report["daemon"]["pid"] == daemon.pid
        human = shepherd(db, "doctor").stdout
        assert f"held by pid {daemon.pid}" in human and "serving" in human
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        log.close()


def test_a_directory_as_the_database_is_bad_input(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    for command in (("status",), ("enqueue", "a"), ("run", "--for", "1s")):
        done = shepherd(str(folder), *command)
        assert done.returncode == 2, done.stderr
        assert "database" in done.stderr and "is a directory" in done.stderr
        assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr
    assert list(folder.iterdir()) == []


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a size-limited tmpfs needs root: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_daemon_starting_on_a_full_disk_exits_3_disk_full(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "full", "256k") as disk:
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):  # fill every block
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        done = shepherd(str(disk / "x.db"), "run", "--for", "5s")
        assert done.returncode == 3, done.stderr[-2000:]
        assert "DiskFull" in done.stderr and "disk is full" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("fault", ["wal removed", "wal index removed", "file replaced"])
def test_a_file_removed_or_replaced_under_the_daemon_stops_it(tmp_path: Path, fault: str) -> None:
    """The daemon's connections would go on committing into inodes no other process
    reads (an enqueue acknowledged, then lost); it notices at its next health tick and
    stops, exit 3, naming the file."""
    db = str(tmp_path / "x.db")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{db}"\nhealth_interval = "100ms"\n')
    assert (
        shepherd(db, "jobs", "add", "a", "--executor", "shell", "--target", "true").returncode == 0
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "shepherd", "--config", str(cfg), "run"], stdout=out, stderr=out
        )
    try:
        eventually(lambda: daemon_pid(db) == daemon.pid, what="the daemon's lock")
        eventually(lambda: "daemon.ready" in log.read_text(), what="the daemon serving")
        if fault in ("wal removed", "wal index removed"):
            named = db + ("-wal" if fault == "wal removed" else "-shm")
            os.unlink(named)
        else:
            other = tmp_path / "other.db"
            with (
                contextlib.closing(sqlite3.connect(db)) as src,
                contextlib.closing(sqlite3.connect(other)) as dst,
            ):
                src.backup(dst)
            os.replace(other, db)
            named = db
        assert daemon.wait(timeout=30) == 3, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = log.read_text()
    assert f"{named} was" in text and "DatabaseReplaced" in text, text


def test_doctor_finds_an_index_that_disagrees_with_its_table(tmp_path: Path) -> None:
    """Sound pages, rows and an index that disagree (what two files' writes mixed in
    one leave): the start's quick check passes the file, ``doctor`` does not."""
    db = str(tmp_path / "x.db")
    assert (
        shepherd(db, "jobs", "add", "a", "--executor", "shell", "--target", "true").returncode == 0
    )
    assert shepherd(db, "enqueue", "a", "--delay", "1h").returncode == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        # the index's entries stay (status, job_id); its definition now says the reverse
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX dispatches_status"
            " ON dispatches(job_id, status)' WHERE name = 'dispatches_status'"
        )
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute(f"PRAGMA schema_version = {version + 1}")
        conn.commit()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]  # pages: sound
    done = shepherd(db, "doctor", "--json")
    report = json.loads(done.stdout)
    assert done.returncode != 0 and report["healthy"] is False, done.stdout
    assert report["integrity"]["ok"] is False, report
    assert any("dispatches_status" in p for p in report["integrity"]["problems"]), report
