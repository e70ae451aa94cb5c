"""``shepherd db upgrade``, ``shepherd nodes`` and the cluster part of ``status``.

- ``db upgrade`` says from which schema version to which, is a no-op the second time,
  and refuses a schema newer than this shepherd (exit 3, nothing changed), on a
  PostgreSQL schema and on a SQLite file alike; a missing SQLite file is not created;
- ``nodes`` on SQLite says there is a single node; on PostgreSQL it lists every node
  with its epoch, status, lease age, and marks the one holding the scheduler lock;
- ``status`` on PostgreSQL adds the nodes and the leader.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from shepherd.store.postgres.engine import PgStore
from shepherd.store.postgres.schema import SCHEMA_VERSION as PG_VERSION
from shepherd.store.sqlite.schema import APPLICATION_ID, MIGRATIONS
from shepherd.store.sqlite.schema import SCHEMA_VERSION as SQLITE_VERSION
from tests.cli_helpers import Cli, clean_cli


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return clean_cli(tmp_path, capsys, monkeypatch, "shepherd.db")


def pg_cli(url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(url, capsys)


async def pg_execute(url: str, sql: str) -> None:
    base, _, query = url.partition("?search_path=")
    conn = await asyncpg.connect(base, server_settings={"search_path": query})
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- db upgrade --------------------------------------------------------------------


def test_db_upgrade_migrates_an_old_sqlite_file_and_says_from_and_to(cli: Cli) -> None:
    with sqlite3.connect(cli.db) as conn:  # a file a release at schema 3 left
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, statements in enumerate(MIGRATIONS[:3], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    out = cli.ok("db", "upgrade")
    assert f"from version 3 to {SQLITE_VERSION}" in out
    again = cli.json("db", "upgrade")
    assert (again["from"], again["to"], again["migrated"]) == (SQLITE_VERSION,) * 2 + (False,)
    assert "already at version" in cli.ok("db", "upgrade")
    assert cli.ok("jobs", "list")  # the upgraded file serves


def test_db_upgrade_refuses_a_newer_sqlite_file_and_a_missing_one(cli: Cli) -> None:
    code, _, err = cli("db", "upgrade")
    assert code == 1 and "no such database file" in err
    assert not Path(cli.db).exists()
    cli.ok("jobs", "add", "j", "--executor", "shell", "--target", "true")
    with sqlite3.connect(cli.db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?)", (SQLITE_VERSION + 1,))
    code, _, err = cli("db", "upgrade")
    assert code == 3, err
    assert f"schema version {SQLITE_VERSION + 1} is newer than this shepherd's" in err


def test_db_upgrade_on_postgresql_creates_then_keeps_then_refuses_newer(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = pg_cli(pg_url, capsys)
    first = cli.json("db", "upgrade")
    assert (first["engine"], first["from"], first["to"]) == ("postgresql", 0, PG_VERSION)
    assert first["migrated"] is True and first["schema"] == pg_url.rpartition("=")[2]
    assert "already at version" in cli.ok("db", "upgrade")
    asyncio.run(pg_execute(pg_url, f"UPDATE schema_version SET version = {PG_VERSION + 1}"))
    code, _, err = cli("db", "upgrade")
    assert code == 3, err
    assert f"schema version {PG_VERSION + 1} is newer than this shepherd's" in err
    code, _, err = cli("jobs", "list")  # a runtime or command of this version refuses it too
    assert code == 3 and "newer" in err


def test_db_upgrade_has_help_with_an_example(cli: Cli) -> None:
    code, out, _ = cli("db", "upgrade", "--help")
    assert code == 0 and "example:" in out and "db upgrade" in out


# -- nodes and status ---------------------------------------------------------------


def test_nodes_on_sqlite_is_a_single_node(cli: Cli) -> None:
    cli.ok("jobs", "add", "j", "--executor", "shell", "--target", "true")
    assert "a single node" in cli.ok("nodes")
    data = cli.json("nodes")
    assert data["cluster"] is False and data["nodes"] == [] and data["leader"] is None
    assert data["daemon"]["serving"] is False


def test_nodes_on_postgresql_lists_every_node_and_the_leader(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def two_nodes() -> tuple[PgStore, PgStore]:
        a, b = await PgStore.open(pg_url), await PgStore.open(pg_url)
        await a.join_node("node-a", lease=5.0, host="h1", pid=11)
        await b.join_node("node-b", lease=5.0, host="h2", pid=22)
        assert await b.lead_scheduler("node-b") is True
        return a, b

    loop = asyncio.new_event_loop()
    try:
        a, b = loop.run_until_complete(two_nodes())
        cli = pg_cli(pg_url, capsys)
        data = cli.json("nodes")
        assert data["cluster"] is True and data["leader"] == "node-b"
        rows = {n["name"]: n for n in data["nodes"]}
        assert set(rows) == {"node-a", "node-b"}
        assert rows["node-b"]["leader"] is True and rows["node-a"]["leader"] is False
        assert {n["status"] for n in rows.values()} == {"alive"}
        assert all(n["epoch"] > 0 and n["lease_age"] >= 0 for n in rows.values())
        text = cli.ok("nodes")
        assert re.search(r"nodes +2 alive", text) and re.search(r"scheduler leader +node-b", text)
        status = cli.json("status")
        assert status["cluster"]["leader"] == "node-b"
        assert status["cluster"]["counts"] == {"alive": 2}
        assert "2 node(s) alive" in cli.ok("status")
        loop.run_until_complete(b.close())  # the leader goes: no one holds the lock
        assert cli.json("nodes")["leader"] is None
    finally:
        loop.run_until_complete(a.close())
        loop.close()
