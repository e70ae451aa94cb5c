"""Bad database files and hostile disks give clear errors and lose nothing committed."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shepherd.runtime import Config, JobSpec, Runtime
from shepherd.store.errors import DatabaseCorrupt, DatabaseLocked, DiskFull, ReadOnly
from shepherd.store.models import EnqueueRequest
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_a_foreign_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    before = path.read_bytes()
    with pytest.raises(DatabaseCorrupt, match="not a shepherd database"):
        await SqliteStore.open(path)
    assert path.read_bytes() == before


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(DatabaseCorrupt, match=r"notes\.db"):
        await SqliteStore.open(path)
    assert path.read_bytes().startswith(b"these are my notes")


async def test_a_damaged_database_is_reported(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path)) as rt:
        await rt.add_job(JobSpec(name="a", executor="shell", target="true"))
    with open(db_path, "r+b") as f:  # scribble over the page after the header
        f.seek(4096)
        f.write(b"\xff" * 4096)
    with pytest.raises(DatabaseCorrupt):
        async with Runtime.open(Config(database=db_path)) as rt:
            await rt.list_jobs()


async def test_a_locked_database_gives_a_clear_error_and_keeps_its_rows(db_path: str) -> None:
    async with Runtime.open(Config(database=db_path, busy_timeout=0.2)) as rt:
        await rt.add_job(JobSpec(name="a", executor="shell", target="true", enabled=True))
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
            with pytest.raises(DatabaseLocked, match="locked"):
                await rt.enqueue("a")
        finally:
            other.execute("ROLLBACK")
            other.close()
        dispatch_id = await rt.enqueue("a")  # the lock is gone: business as usual
        assert (await rt.wait(dispatch_id, timeout=10)).status == "done"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM dispatches").fetchone() == (1,)


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


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@needs_root
async def test_a_full_disk_fails_the_write_and_keeps_what_was_committed(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "512k") as disk:
        db = str(disk / "full.db")
        committed: list[int] = []
        with pytest.raises(DiskFull, match="full"):
            async with Runtime.open(Config(database=db, concurrency=1)) as rt:
                await rt.add_job(
                    JobSpec(
                        name="a", executor="shell", target="sleep 60", enabled=True, timeout=120
                    )
                )
                payload = {"blob": "x" * 2000}
                for _ in range(1000):
                    committed += await rt.enqueue_many(
                        [EnqueueRequest(job="a", payload=payload)] * 10
                    )
        assert committed, "some batches fit before the disk filled up"
        with sqlite3.connect(db) as conn:
            ids = {r[0] for r in conn.execute("SELECT id FROM dispatches")}
        assert set(committed) <= ids  # every acknowledged dispatch survived


@needs_root
async def test_a_read_only_directory_gives_a_clear_error(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "ro", "1m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(ReadOnly, match=r"x\.db: cannot write") as info:
            async with Runtime.open(Config(database=str(disk / "x.db"))):
                pass
        assert "Read-only file system" in str(info.value)
