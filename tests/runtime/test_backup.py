"""Backups: the store's stepped copy under concurrent writes, restore, and the scheduled
backup actor of a runtime on the fake clock (rotation to ``keep``, statistics, status).

The daemon end-to-end tests (backup while jobs run, restore, compare) are in
``tests/e2e/test_backup_e2e.py``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from shepherd.actors.backup import BackupConfig, backup_name, backup_time, next_backup_at, to_remove
from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import Config, JobSpec, Runtime
from shepherd.runtime._cli_status import _health_lines
from shepherd.runtime.config import load_config
from shepherd.store import factory
from shepherd.store.errors import ConfigError, DatabaseCorrupt, StoreError
from shepherd.store.models import Seconds
from shepherd.store.sqlite import SqliteStore
from shepherd.store.sqlite import backup as sqlite_backup
from shepherd.store.sqlite.schema import SCHEMA_VERSION
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


async def noop(_ctx: Any) -> None:
    return None


# -- pure: names, schedule, rotation ----------------------------------------------------


def test_backup_names_sort_by_time_and_rotation_keeps_the_newest() -> None:
    names = [backup_name("app", 1_700_000_000 + h * 3600) for h in range(5)]
    assert names[0] == "app-20231114T221320Z.db"
    assert backup_time("app", names[2]) == 1_700_000_000 + 7200
    others = ["app.db", "other-20231114T221320Z.db", ".app-x.db.partial-1"]
    assert to_remove("app", others + names[::-1], 3) == names[:2]
    assert to_remove("app", names, 10) == []


def test_the_schedule_follows_the_newest_backup() -> None:
    assert next_backup_at(None, 1000.0, 3600) == 1060.0  # none yet: a minute after start
    assert next_backup_at(None, 1000.0, 10) == 1010.0
    assert next_backup_at(500.0, 1000.0, 3600) == 4100.0
    assert next_backup_at(-9000.0, 1000.0, 3600) == 1000.0  # overdue: now


def test_backup_config_bounds_and_dir_relative_to_the_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backup\.keep"):
        BackupConfig(keep=0)
    with pytest.raises(ConfigError, match=r"backup\.every"):
        BackupConfig(every=Seconds(0.5))
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "s.toml").write_text('[backup]\nevery = "1h"\nkeep = 5\ndir = "bk"\n')
    cfg = load_config(conf / "s.toml")
    assert cfg.backup.every == 3600 and cfg.backup.keep == 5
    assert cfg.backup_dir == str(conf / "bk")
    assert Config(database="x.db").backup_dir == "x.db.backups"


# -- the store's copy ---------------------------------------------------------------------


async def test_a_stepped_backup_is_one_snapshot_while_another_connection_commits(
    db_path: str, tmp_path: Path
) -> None:
    store = await SqliteStore.open(db_path)
    await store.close()
    with sqlite3.connect(db_path, isolation_level=None) as conn:
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (randomblob(3000))", [()] * 2000)
    writer = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    steps: list[tuple[int, int]] = []

    def commit_between_steps(done: int, total: int) -> None:
        steps.append((done, total))
        writer.execute("INSERT INTO filler VALUES (randomblob(3000))")  # a commit each step

    src = sqlite3.connect(db_path, isolation_level=None)
    target = str(tmp_path / "copy.db")
    try:
        size = sqlite_backup.copy_to(src, target, pages=100, progress=commit_between_steps)
    finally:
        src.close()
    # no restart: the steps advance monotonically to the total once
    assert len(steps) > 10 and steps[-1][0] == steps[-1][1]
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert size == os.path.getsize(target)  # noqa: ASYNC240
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT COUNT(*) FROM filler").fetchone() == (2000,)
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert writer.execute("SELECT COUNT(*) FROM filler").fetchone()[0] == 2000 + len(steps)
    writer.close()
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]


async def test_a_backup_into_a_missing_directory_names_it_and_writes_nothing(
    db_path: str, tmp_path: Path
) -> None:
    store = await SqliteStore.open(db_path)
    try:
        with pytest.raises(StoreError, match="nope"):
            await store.backup(str(tmp_path / "nope" / "b.db"))
        (tmp_path / "afile").write_text("x")
        with pytest.raises(StoreError, match="afile"):
            await store.backup(str(tmp_path / "afile" / "b.db"))
    finally:
        await store.close()
    assert sorted(os.listdir(tmp_path)) == ["afile", "shepherd.db"]


async def test_restore_checks_the_backup_in_full_and_replaces_the_target_atomically(
    db_path: str, tmp_path: Path
) -> None:
    async with Runtime.open(Config(database=db_path), targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="j", target="noop"))
        await rt.wait(await rt.enqueue("j"), timeout=10)
        backup = str(tmp_path / "b.db")
        await rt.store.backup(backup)
    target = tmp_path / "restored.db"
    target.write_bytes(b"old")
    (tmp_path / "restored.db-wal").write_bytes(b"stale wal")
    assert factory.restore_backup(backup, str(target)) == SCHEMA_VERSION
    assert not (tmp_path / "restored.db-wal").exists()
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT status FROM dispatches").fetchall() == [("done",)]
    damaged = tmp_path / "damaged.db"
    data = bytearray(Path(backup).read_bytes())  # noqa: ASYNC240
    data[4096 * 2 : 4096 * 2 + 200] = b"\xff" * 200  # a btree page
    damaged.write_bytes(bytes(data))
    before = target.read_bytes()
    with pytest.raises(DatabaseCorrupt):
        factory.restore_backup(str(damaged), str(target))
    assert target.read_bytes() == before  # nothing lost


# -- the scheduled backup actor -----------------------------------------------------------


async def test_scheduled_backups_rotate_to_keep_on_the_fake_clock(
    db_path: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    bdir = tmp_path / "backups"
    cfg = Config(
        database=db_path,
        shutdown_grace=0,
        backup=BackupConfig(every=Seconds(3600), keep=3, dir=str(bdir)),
    )
    async with Runtime.open(cfg, clock=clock, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="j", target="noop"))
        await rt.wait(await rt.enqueue("j"), timeout=10)
        await clock.advance_when_blocked(60)  # none yet: the first a minute after start
        await eventually(lambda: rt.statistics()["backup"]["backups"] == 1, what="a backup")
        for n in range(2, 6):
            await clock.advance_when_blocked(3600)
            await eventually(
                lambda n=n: rt.statistics()["backup"]["backups"] == n, what=f"backup {n}"
            )
        stats = rt.statistics()["backup"]
        names = sorted(os.listdir(bdir))
        assert len(names) == 3 and stats["removed"] == 2
        assert names[-1] == os.path.basename(stats["last"]["path"])
        assert [backup_time("shepherd", n) for n in names] == [
            clock.wall() - 7200,
            clock.wall() - 3600,
            clock.wall(),
        ]
        assert stats["last"]["bytes"] == os.path.getsize(stats["last"]["path"])  # noqa: ASYNC240
        assert stats["next_at"] == clock.wall() + 3600
        with sqlite3.connect(stats["last"]["path"]) as conn:
            assert conn.execute("SELECT COUNT(*) FROM dispatches").fetchone() == (1,)
    store = await SqliteStore.open(db_path, create=False)
    try:
        instance = await store.latest_instance()
    finally:
        await store.close()
    assert instance is not None
    line = _health_lines(instance)["backup"]
    assert line.startswith("last ") and names[-1] in line and "next " in line


async def test_a_restarted_runtime_schedules_from_the_newest_backup(
    db_path: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    bdir = tmp_path / "bk"
    bdir.mkdir()
    (bdir / backup_name("shepherd", clock.wall() - 1800)).write_bytes(b"")
    cfg = Config(
        database=db_path, shutdown_grace=0, backup=BackupConfig(every=Seconds(3600), dir=str(bdir))
    )
    async with Runtime.open(cfg, clock=clock) as rt:
        assert rt.statistics()["backup"]["next_at"] == clock.wall() + 1800
        await clock.advance_when_blocked(1799)
        assert rt.statistics()["backup"]["backups"] == 0
        await clock.advance_when_blocked(1)
        await eventually(lambda: rt.statistics()["backup"]["backups"] == 1, what="a backup")


async def test_a_failing_scheduled_backup_is_counted_and_the_runtime_keeps_serving(
    db_path: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    (tmp_path / "file").write_text("not a directory")
    cfg = Config(
        database=db_path,
        shutdown_grace=0,
        backup=BackupConfig(every=Seconds(10), dir=str(tmp_path / "file" / "bk")),
    )
    async with Runtime.open(cfg, clock=clock, targets={"noop": noop}) as rt:
        await clock.advance_when_blocked(10)
        await eventually(lambda: rt.statistics()["backup"]["failures"] == 1, what="a failure")
        assert "file" in rt.statistics()["backup"]["last_error"]
        await rt.add_job(JobSpec(name="j", target="noop"))
        assert (await rt.wait(await rt.enqueue("j"), timeout=10)).status == "done"
