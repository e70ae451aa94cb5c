"""The integrity checks run before anything writes (``store.sqlite.integrity``), and OSErrors
on the files kept beside the database mapped onto the store's errors."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from shepherd.actors.ingest import Ingest
from shepherd.actors.messages import DispatcherMsg
from shepherd.actors.primitives.mailbox import Mailbox
from shepherd.runtime import Config, EnqueueRequest, JobSpec, Runtime
from shepherd.store.errors import DatabaseCorrupt, DiskFull, ReadOnly, StoreError, os_error
from shepherd.store.sqlite import SqliteStore, integrity

pytestmark = pytest.mark.anyio


async def _database(path: str) -> None:
    async with Runtime.open(Config(database=path)) as rt:
        for i in range(40):
            await rt.add_job(JobSpec(name=f"job{i}", target="x", payload={"pad": "y" * 300}))
        await rt.enqueue_many(
            [EnqueueRequest(job="job0", payload={"n": i}, not_before=4e9) for i in range(3000)]
        )


def _pages(path: str, name: str, kind: str) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            rows = conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = ? ORDER BY pageno",
                (name, kind),
            ).fetchall()
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat virtual table")
    return [r[0] for r in rows]


def _scribble(path: str, page: int) -> None:
    with open(path, "r+b") as f:
        f.seek((page - 1) * 4096 + 8)
        f.write(b"\xa5" * 3000)


def _check(path: str, mode: integrity.Check) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        integrity.verify(conn, mode, path)


@pytest.fixture
async def db(db_path: str) -> str:
    await _database(db_path)
    return db_path


async def test_bounded_check_of_a_large_file_reads_the_small_tables_whole(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrity, "FULL_UP_TO", 0)  # as if the file were large
    _check(db, "bounded")  # healthy
    leaves = _pages(db, "jobs", "leaf")
    assert len(leaves) > 2
    _scribble(db, leaves[len(leaves) // 2])
    with pytest.raises(DatabaseCorrupt, match="in table jobs"):
        _check(db, "bounded")


async def test_bounded_check_probes_the_btrees_of_the_large_tables(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrity, "FULL_UP_TO", 0)
    [root] = _pages(db, "dispatches", "internal")[:1]  # the btree's top: every probe reads it
    _scribble(db, root)
    with pytest.raises(DatabaseCorrupt, match="in table dispatches"):
        _check(db, "bounded")


async def test_a_full_check_finds_one_damaged_leaf_anywhere(db: str) -> None:
    leaves = _pages(db, "dispatches", "leaf")
    _scribble(db, leaves[len(leaves) // 2])
    with pytest.raises(DatabaseCorrupt, match="in table dispatches") as info:
        _check(db, "full")
    assert "table jobs" not in str(info.value)
    with pytest.raises(DatabaseCorrupt, match="in table dispatches"):
        await SqliteStore.open(db)  # the runtime's default: full


# -- the runtime's start_check --------------------------------------------------------


def test_which_check_each_start_check_runs_by_file_size() -> None:
    mib = 2**20
    assert integrity.which_check("none", 10**12) == "none"
    assert integrity.which_check("full", 10**12) == "full"
    assert integrity.which_check("bounded", 64 * mib) == "full"  # a small file: in full
    assert integrity.which_check("bounded", 64 * mib + 1) == "bounded"
    assert integrity.which_check("auto", 256 * mib) == "full"
    assert integrity.which_check("auto", 256 * mib + 1) == "bounded"


def _count_full_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every whole-file ``PRAGMA quick_check`` (no table named)."""
    calls: list[str] = []
    real = integrity.quick_check

    def spy(conn: sqlite3.Connection, table: str | None = None, **kw: str) -> list[str]:
        if table is None:
            calls.append("full")
        return real(conn, table, **kw)

    monkeypatch.setattr(integrity, "quick_check", spy)
    return calls


@pytest.mark.parametrize(
    ("setting", "large", "ran"),
    [
        ("full", True, "full"),
        ("auto", False, "full"),
        ("auto", True, "bounded"),
        ("bounded", True, "bounded"),
        ("off", True, "none"),
    ],
)
async def test_the_start_check_runs_as_configured_and_says_which_ran(
    db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    setting: Literal["auto", "full", "bounded", "off"],
    large: bool,
    ran: str,
) -> None:
    if large:  # as if the file were above both thresholds
        monkeypatch.setattr(integrity, "FULL_UP_TO", 0)
        monkeypatch.setattr(integrity, "AUTO_FULL_UP_TO", 0)
    full_checks = _count_full_checks(monkeypatch)
    caplog.set_level(logging.WARNING, logger="shepherd")
    async with Runtime.open(Config(database=db, start_check=setting)) as rt:
        shown = rt.statistics()["start_check"]
        seconds = rt.statistics()["store"]["start_check_seconds"]
    assert full_checks == (["full"] if ran == "full" else [])
    assert shown.split()[0] == ran
    warned = "without an integrity check" in caplog.text
    assert warned == (setting == "off")
    if ran == "none":
        assert shown == "none (off)" and seconds == 0
    else:
        assert re.fullmatch(rf"{ran} \d+\.\d{{3}}s( \({setting}\))?", shown), shown
        assert seconds > 0


@pytest.mark.parametrize("setting", ["full", "bounded", "auto"])
async def test_a_damaged_file_is_refused_at_start_by_every_start_check_but_off(
    db: str, monkeypatch: pytest.MonkeyPatch, setting: Literal["auto", "full", "bounded"]
) -> None:
    monkeypatch.setattr(integrity, "FULL_UP_TO", 0)  # bounded: the probes, not a full check
    monkeypatch.setattr(integrity, "AUTO_FULL_UP_TO", 0)
    full_checks = _count_full_checks(monkeypatch)
    leaves = _pages(db, "jobs", "leaf")
    _scribble(db, leaves[len(leaves) // 2])
    before = _bytes(db)
    with pytest.raises(DatabaseCorrupt, match="in table jobs"):
        async with Runtime.open(Config(database=db, start_check=setting)):
            pass
    assert full_checks == (["full"] if setting == "full" else [])
    assert _bytes(db) == before


def _bytes(path: str) -> bytes:
    return Path(path).read_bytes() if Path(path).exists() else b""


async def test_opening_a_store_at_its_schema_version_writes_nothing(db: str) -> None:
    before = _bytes(db)
    store = await SqliteStore.open(db, check="bounded")
    assert _bytes(f"{db}-wal") == b""  # no WAL frame: nothing written
    await store.close(checkpoint=False)
    assert _bytes(db) == before


def test_os_errors_beside_the_database_map_by_errno() -> None:
    def err(code: int) -> OSError:
        return OSError(code, os.strerror(code))

    assert isinstance(os_error(err(errno.ENOSPC), "x.db"), DiskFull)
    assert isinstance(os_error(err(errno.EDQUOT), "x.db"), DiskFull)
    assert isinstance(os_error(err(errno.EROFS), "x.db"), ReadOnly)
    assert isinstance(os_error(err(errno.EACCES), "x.db"), ReadOnly)
    other = os_error(err(errno.EIO), "x.db")
    assert type(other) is StoreError and str(other).startswith("x.db: ")


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
async def test_a_wake_socket_on_a_full_file_system_is_disk_full(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "full", "size=1m,nr_inodes=8") as disk:
        with contextlib.suppress(OSError):  # use up every inode
            for i in range(100):
                (disk / f"f{i}").touch()
        mailbox: Mailbox[DispatcherMsg] = Mailbox("dispatcher", 10)
        ingest = Ingest(str(tmp_path / "x.db"), mailbox.address())
        ingest._path = str(disk / "x.wake")
        with pytest.raises(DiskFull, match="wake socket"):
            await ingest.run()


def test_doctor_says_a_file_it_cannot_read_for_a_read_only_directory_is_unchecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WAL database in a directory its reader cannot write (no -shm can be made) is
    not called damaged: the report says why it could not be read."""
    db = tmp_path / "x.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode = wal")

    def readonly(conn: sqlite3.Connection) -> dict[str, object]:
        exc = sqlite3.OperationalError("attempt to write a readonly database")
        exc.sqlite_errorcode = sqlite3.SQLITE_READONLY  # as SQLite raises it there
        raise exc

    monkeypatch.setattr(integrity, "_file_facts", readonly)
    report = integrity.diagnose(str(db))
    assert report["healthy"] is False
    assert "cannot be read here" in report["problem"] and "read-only" in report["problem"]
    assert "not a readable SQLite database" not in report["problem"]
