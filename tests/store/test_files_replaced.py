"""A WAL index (``-shm``) or WAL removed under an open store stops its commits before
they overwrite anyone's frames (``store.sqlite.files``): real files, and a second
writer in a process of its own (the CLI, ``shepherd jobs add``, writing the file
directly). The store refuses the next commit, inline or on the writer's thread, with
``DatabaseReplaced`` naming the file; closing it checkpoints nothing, so the other
process's row is there when the file is opened again."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from shepherd.store.errors import DatabaseReplaced
from shepherd.store.ops import InsertDispatches, NewDispatch, SaveJob, WriteOp
from shepherd.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def _job(name: str) -> SaveJob:
    spec = f'{{"name":"{name}","executor":"shell","target":"true"}}'.encode()
    return SaveJob(name, "shell", True, spec, None, 1.0)


def _insert(job_id: int) -> InsertDispatches:
    row = NewDispatch(
        job_id=job_id, job_name="a", kind="enqueue", priority=2, not_before=0.0, max_attempts=1
    )
    return InsertDispatches([row], "test", 1.0)


def _jobs(path: str) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM jobs ORDER BY name")]


def _dispatches(path: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        n: int = conn.execute("SELECT COUNT(*) FROM dispatches").fetchone()[0]
    return n


def _cli_adds_job(db: str, name: str) -> None:
    """Another process writes the file directly, as ``shepherd jobs add`` does."""
    argv = [sys.executable, "-m", "shepherd", "--database", db, "jobs", "add", name]
    done = subprocess.run(
        [*argv, "--executor", "shell", "--target", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", ["inline", "writer thread"])
async def test_a_removed_wal_index_stops_commits_and_the_other_writers_row_survives(
    tmp_path: Path, path: str
) -> None:
    db = str(tmp_path / "x.db")
    store = await SqliteStore.open(db)
    try:
        job_id = await store.apply_one(_job("a"))
        await store.apply([_insert(job_id)])  # the WAL and its index are in use
        os.unlink(db + "-shm")
        _cli_adds_job(db, "b")  # builds a new index: the two now disagree on the WAL's end
        # a small group of the dispatch path commits inline; a job's save hops
        ops: list[WriteOp] = [_insert(job_id)] if path == "inline" else [_job("c")]
        inline = store.commits_inline
        with pytest.raises(DatabaseReplaced) as caught:
            await store.apply(ops)
        assert store.commits_inline == inline
        message = str(caught.value)
        assert "x.db-shm was replaced by another file" in message  # the CLI's new index
        assert "restart the runtime" in message
        with pytest.raises(DatabaseReplaced):
            store.check_files()  # what the health monitor sees at its next tick
    finally:
        await store.close()  # as the runtime closes: it would checkpoint (TRUNCATE)
    assert _jobs(db) == ["a", "b"]  # the other process's row survived; "c" never committed
    assert _dispatches(db) == 1


async def test_a_removed_wal_stops_commits_at_once(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    store = await SqliteStore.open(db)
    try:
        job_id = await store.apply_one(_job("a"))
        os.unlink(db + "-wal")
        with pytest.raises(DatabaseReplaced, match=r"x\.db-wal was removed"):
            await store.apply([_insert(job_id)])
    finally:
        await store.close()


async def test_the_files_are_watched_under_the_name_sqlite_resolves(tmp_path: Path) -> None:
    """Opened through a symlink, the store watches the target's WAL and index, the
    files SQLite writes (it resolves symlinks), not ``alias.db-wal``."""
    real = str(tmp_path / "real.db")
    os.symlink("real.db", tmp_path / "alias.db")
    store = await SqliteStore.open(str(tmp_path / "alias.db"))
    try:
        await store.apply_one(_job("a"))
        assert not (tmp_path / "alias.db-wal").exists()
        os.unlink(real + "-wal")
        with pytest.raises(DatabaseReplaced, match=r"real\.db-wal was removed"):
            store.check_files()
    finally:
        await store.close()
