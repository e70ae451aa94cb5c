"""Backups of a PostgreSQL database: ``shepherd backup`` writes a ``pg_dump`` file that
``pg_restore`` reads back; ``restore`` and ``doctor`` refuse a postgresql:// database
with a ConfigError naming ``database`` (exit 2, no traceback, nothing written beside a
URL); a missing ``pg_dump`` is a store error (exit 3); scheduled backups need a
``[backup] dir`` there and write ``.dump`` files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest

from shepherd.actors.backup import BackupConfig, backup_files, backup_time
from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import Config, JobSpec, Runtime
from shepherd.store.errors import ConfigError
from shepherd.store.factory import open_store
from shepherd.store.models import Seconds
from shepherd.store.postgres.backup import libpq_url, restore_command
from tests.cli_helpers import Cli
from tests.helpers import eventually
from tests.pg_restore import restored_elsewhere, toc
from tests.store.contract.helpers import add_job

pytestmark = pytest.mark.anyio


async def noop(_ctx: Any) -> None:
    return None


def _schema(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["search_path"]


@pytest.fixture
def cli(
    pg_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE", "CONCURRENCY", "LOG_LEVEL"):
        monkeypatch.delenv(f"SHEPHERD_{name}", raising=False)
    return Cli(pg_url, capsys)


async def _seed(url: str) -> None:
    store = await open_store(url)
    try:
        await add_job(store, "nightly")
    finally:
        await store.close()


def test_backup_files_name_a_dump_by_database_and_schema() -> None:
    assert backup_files("/srv/app.db") == ("app", ".db")
    assert backup_files("postgresql://u:p@h:5432/prod?search_path=jobs") == ("prod-jobs", ".dump")
    assert backup_files("postgres://h/prod") == ("prod-public", ".dump")


def test_pg_dump_gets_a_libpq_url_and_the_password_apart() -> None:
    url = "postgresql://ops:p%40ss@db:5433/prod?search_path=jobs&sslmode=require"
    assert libpq_url(url) == ("postgresql://ops@db:5433/prod?sslmode=require", "p@ss")
    assert libpq_url("postgres://db/prod") == ("postgresql://db/prod", None)
    command = restore_command(url, "/bk/prod.dump")
    assert command.startswith("pg_restore --dbname='postgresql://ops@db:5433/prod?sslmode=require'")
    assert "p@ss" not in command and command.endswith("'/bk/prod.dump'")


async def _jobs_of_restored_copy(url: str, dump: str) -> list[str]:
    async with restored_elsewhere(url, dump) as copy_url:
        copy = await open_store(copy_url)
        try:
            return [j.spec.name for j in await copy.jobs()]
        finally:
            await copy.close()


def test_cli_backup_on_postgresql_writes_a_pg_dump_that_pg_restore_reads(
    cli: Cli, pg_url: str, tmp_path: Path
) -> None:
    anyio.run(_seed, pg_url)
    target = str(tmp_path / "prod.dump")
    out = cli.json("backup", target)
    assert out["backup"] == target and out["bytes"] == os.path.getsize(target) > 0
    assert f"TABLE {_schema(pg_url)} jobs" in toc(target)
    code, _, err = cli("backup", target)  # an existing file needs --force
    assert code == 1 and "--force" in err
    assert anyio.run(_jobs_of_restored_copy, pg_url, target) == ["nightly"]
    assert sorted(os.listdir(tmp_path)) == ["prod.dump"]


def test_restore_and_doctor_refuse_postgresql_naming_database(
    cli: Cli, pg_url: str, tmp_path: Path
) -> None:
    anyio.run(_seed, pg_url)
    code, out, err = cli("restore", str(tmp_path / "x.dump"))
    assert code == 2 and out == ""
    assert err.startswith("shepherd: error: database:") and "pg_restore --dbname=" in err
    assert "Traceback" not in err
    code, _, err = cli("doctor")
    assert code == 2 and err.startswith("shepherd: error: database:") and "PostgreSQL" in err
    assert os.listdir(tmp_path) == []


def test_a_missing_pg_dump_is_a_store_error_and_writes_nothing(
    cli: Cli, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    anyio.run(_seed, pg_url)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, _, err = cli("backup", str(tmp_path / "b.dump"))
    assert code == 3 and "pg_dump is not on PATH" in err
    assert os.listdir(tmp_path) == ["bin"]


def test_scheduled_backups_on_postgresql_need_a_directory(pg_url: str) -> None:
    with pytest.raises(ConfigError, match=r"backup\.dir"):
        Config(database=pg_url, backup=BackupConfig(every=Seconds(3600)))
    assert Config(database=pg_url).backup_dir == ""  # off: nothing written anywhere


async def test_scheduled_backups_on_postgresql_write_rotated_dumps(
    pg_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    bdir = tmp_path / "backups"
    cfg = Config(
        database=pg_url,
        shutdown_grace=0,
        backup=BackupConfig(every=Seconds(3600), keep=2, dir=str(bdir)),
    )
    stem, suffix = backup_files(pg_url)
    async with Runtime.open(cfg, clock=clock, targets={"noop": noop}) as rt:
        await rt.add_job(JobSpec(name="j", target="noop"))
        await clock.advance_when_blocked(60)
        await eventually(lambda: rt.statistics()["backup"]["backups"] == 1, what="a backup")
        for n in (2, 3):
            await clock.advance_when_blocked(3600)
            await eventually(
                lambda n=n: rt.statistics()["backup"]["backups"] == n, what=f"backup {n}"
            )
        stats = rt.statistics()["backup"]
    names = sorted(os.listdir(bdir))
    assert len(names) == 2 and stats["removed"] == 1 and stats["failures"] == 0
    assert all(backup_time(stem, n, suffix) is not None for n in names)
    assert f"TABLE {_schema(pg_url)} jobs" in toc(stats["last"]["path"])
