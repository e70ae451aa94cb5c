"""SQLite engine specifics: job ids are never reused (migration 6 on an old file), the
checkpoint and the backup hop through the counted thread helper, and the factory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from shepherd.runtime.config import Config, load_config
from shepherd.store.activity import THREAD_WORK
from shepherd.store.errors import ConfigError
from shepherd.store.factory import database_path, open_store
from shepherd.store.ops import DeleteJob, InsertDispatches, NewDispatch, SaveJob
from shepherd.store.sqlite import SqliteStore
from shepherd.store.sqlite.batch import on_thread
from shepherd.store.sqlite.schema import APPLICATION_ID, MIGRATIONS

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store  # tests/conftest.py


def _save(name: str, now: float = 1.0) -> SaveJob:
    spec = f'{{"name":"{name}","target":"ok"}}'.encode()
    return SaveJob(name, "python", True, spec, None, now)


def _keyed(job_id: int, name: str, key: str) -> NewDispatch:
    return NewDispatch(
        job_id=job_id,
        job_name=name,
        kind="enqueue",
        priority=2,
        not_before=0.0,
        max_attempts=1,
        idempotency_key=key,
    )


def _file_at(path: str, version: int) -> None:
    """A file at schema ``version``: job 1 and 2 exist, job 3 was removed after its
    dispatch took the producer key ``K``; job 4 (removed too) left a run behind."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for v in range(version):
            for statement in MIGRATIONS[v]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (v + 1,))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.executemany(
            "INSERT INTO jobs (id, name, executor, spec, created_at, updated_at)"
            " VALUES (?, ?, 'python', ?, 0, 0)",
            [(i, n, f'{{"name":"{n}","target":"ok"}}') for i, n in ((1, "a"), (2, "b"))],
        )
        conn.execute(
            "INSERT INTO dispatches (id, seq, job_id, job_name, kind, status, priority,"
            " not_before, max_attempts, idempotency_key, producer_key, created_at,"
            " updated_at) VALUES (1, 1, 3, 'c', 'enqueue', 'cancelled', 2, 0, 1, 'K', 'K',"
            " 0, 0)"
        )
        conn.execute(
            "INSERT INTO runs (id, dispatch_id, job_id, job_name, attempt, status, started_at)"
            " VALUES (1, 1, 4, 'd', 1, 'cancelled', 0)"
        )


async def test_a_removed_jobs_id_is_not_given_to_the_next_job(store: SqliteStore) -> None:
    a = await store.apply_one(_save("a"))
    b = await store.apply_one(_save("b"))
    [(d, _)] = await store.apply_one(InsertDispatches([_keyed(b, "b", "K")], "cli", 2.0))
    assert await store.apply_one(DeleteJob(b, 3.0))
    c = await store.apply_one(_save("c", 4.0))
    assert c > b > a
    # the new job's key is its own: a new dispatch, not the removed job's
    [got] = await store.apply_one(InsertDispatches([_keyed(c, "c", "K")], "cli", 5.0))
    assert isinstance(got, tuple) and got[0] != d


async def test_an_old_file_migrates_and_starts_past_every_job_id_it_names(db_path: str) -> None:
    _file_at(db_path, 5)
    store = await SqliteStore.open(db_path)
    try:
        assert [j.id for j in await store.jobs()] == [1, 2]
        e = await store.apply_one(_save("e"))
        assert e == 5  # past job 4, named by a run only
        [got] = await store.apply_one(InsertDispatches([_keyed(e, "e", "K")], "cli", 2.0))
        assert isinstance(got, tuple)
    finally:
        await store.close(checkpoint=False)
    with sqlite3.connect(db_path) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
        index = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs_due'").fetchone()
    assert "AUTOINCREMENT" in sql and index is not None


def _gated(gate: threading.Event) -> Callable[[sqlite3.Connection], None]:
    def hold(conn: sqlite3.Connection) -> None:
        gate.wait(10)

    return hold


async def _counted_while_queued(
    store: SqliteStore, conn_of: Callable[[], object], work: Callable[[], object]
) -> int:
    """``THREAD_WORK.in_flight`` while ``work`` waits behind a held hop on the same
    connection's thread (2: the work is counted; 1: it is not)."""
    gate = threading.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(on_thread, conn_of(), _gated(gate))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(work)
            await anyio.wait_all_tasks_blocked()
            seen = THREAD_WORK.in_flight
            gate.set()
    finally:
        gate.set()
    assert THREAD_WORK.in_flight == 0
    return seen


async def test_a_backup_is_counted_as_store_work(store: SqliteStore, tmp_path: Path) -> None:
    await store.backup(f"{tmp_path}/first.db")  # opens the backup connection
    target = f"{tmp_path}/copy.db"
    seen = await _counted_while_queued(store, lambda: store._backup, lambda: store.backup(target))
    assert seen == 2
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)


async def test_a_checkpoint_is_counted_as_store_work(store: SqliteStore) -> None:
    await store.checkpoint()  # opens its own connection
    seen = await _counted_while_queued(
        store, lambda: store._maintenance, lambda: store.checkpoint("PASSIVE")
    )
    assert seen == 2 and store.checkpoints == 2
    seen = await _counted_while_queued(
        store, lambda: store._writer, lambda: store.checkpoint("TRUNCATE")
    )
    assert seen == 2


async def test_a_checkpoint_says_how_far_the_wal_moved_since_the_last(store: SqliteStore) -> None:
    """The pruner checkpoints again soon while this is not 0 (``actors/pruner.py``)."""
    await store.checkpoint()
    assert await store.checkpoint() == 0  # nothing committed in between
    job = await store.apply_one(_save("a"))
    moved = await store.checkpoint()
    assert moved > 0
    assert await store.checkpoint() == 0
    await store.apply_one(InsertDispatches([_keyed(job, "a", "K")], "cli", 2.0))
    assert 0 < await store.checkpoint() <= moved + 16


@pytest.mark.parametrize(
    ("database", "path"),
    [
        ("jobs.db", "jobs.db"),
        ("/var/lib/x.db", "/var/lib/x.db"),
        ("sqlite:///jobs.db", "jobs.db"),
        ("sqlite:////var/lib/x.db", "/var/lib/x.db"),
    ],
)
def test_a_path_or_sqlite_url_names_a_sqlite_file(database: str, path: str) -> None:
    assert database_path(database) == path


@pytest.mark.parametrize("database", ["mysql://h/db", "redis://h/0"])
async def test_an_unknown_engines_url_is_refused_by_name(database: str) -> None:
    with pytest.raises(ConfigError) as info:
        await open_store(database)
    assert info.value.field == "database"
    assert "unknown database scheme" in str(info.value)


@pytest.mark.parametrize("database", ["postgresql://u@h/db", "postgres://h/db"])
def test_a_postgresql_url_is_no_sqlite_file(database: str) -> None:
    """The tools that work on a file (doctor, restore) refuse a PostgreSQL URL by name."""
    with pytest.raises(ConfigError) as info:
        database_path(database)
    assert info.value.field == "database"
    assert "PostgreSQL URL" in str(info.value)


async def test_open_store_opens_a_sqlite_url(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/x.db")
    try:
        assert await store.stats() == {
            "dispatches": {
                "queued": 0,
                "awaiting_approval": 0,
                "running": 0,
                "done": 0,
                "cancelled": 0,
                "dead": 0,
            },
            "approvals_pending": 0,
            "runs_running": 0,
            "jobs": 0,
            "jobs_enabled": 0,
        }
    finally:
        await store.close(checkpoint=False)


def test_the_config_names_the_file_of_a_sqlite_url_and_refuses_other_engines(
    tmp_path: Path,
) -> None:
    assert Config(database="sqlite:///x.db").database == "x.db"
    config = tmp_path / "shepherd.toml"
    config.write_text('database = "sqlite:///jobs.db"\n')
    assert load_config(config).database == str(tmp_path / "jobs.db")
    # a PostgreSQL URL is kept as written (not made a path beside the config file)
    config.write_text('database = "postgresql://h/db?search_path=s"\n')
    assert load_config(config).database == "postgresql://h/db?search_path=s"
    with pytest.raises(ConfigError) as info:
        Config(database="mysql://h/db")
    assert info.value.field == "database"
