"""``jobs update | enable | disable | run | next`` through ``main(argv)``."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from tests.runtime.test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    c = Cli(str(tmp_path / "s.db"), capsys)
    c.ok(
        "jobs",
        "add",
        "nightly",
        "--executor",
        "shell",
        "--target",
        "echo hi",
        "--cron",
        "0 3 * * *",
        "--tz",
        "UTC",
    )
    return c


def test_next_lists_the_coming_fire_times(cli: Cli) -> None:
    got = cli.json("jobs", "next", "nightly", "-n", "3")["next"]
    assert len(got) == 3 and all(b - a == 86400 for a, b in itertools.pairwise(got))
    assert got[0] % 86400 == 3 * 3600  # 03:00 UTC


def _next(cli: Cli) -> float:
    return float(cli.json("jobs", "next", "nightly", "-n", "1")["next"][0])


def test_update_recomputes_the_next_fire_time(cli: Cli) -> None:
    out = cli.json("jobs", "update", "nightly", "--cron", "30 4 * * *")
    assert out["next_run_at"].endswith("T04:30:00.000Z")
    after = _next(cli)
    assert after % 86400 == 4.5 * 3600
    assert cli.json("jobs", "show", "nightly")["spec"]["cron"] == "30 4 * * *"
    # a change that keeps the schedule keeps the next slot
    cli.ok("jobs", "update", "nightly", "--priority", "high")
    assert _next(cli) == after


def test_bad_update_names_the_flag_and_changes_nothing(cli: Cli) -> None:
    spec = cli.json("jobs", "show", "nightly")
    code, _, err = cli("jobs", "update", "nightly", "--tz", "Mars/Olympus")
    assert code == 2 and "--tz" in err and "Mars/Olympus" in err
    code, _, err = cli("jobs", "update", "nightly", "--cron", "61 * * * *")
    assert code == 2 and "--cron" in err
    assert cli.json("jobs", "show", "nightly") == spec
    assert cli("jobs", "update", "nope", "--priority", "low")[0] == 1


def test_disable_enable_and_run_now(cli: Cli) -> None:
    before = _next(cli)
    assert cli.json("jobs", "disable", "nightly")["next_run_at"] is None
    assert cli.json("jobs", "next", "nightly")["next"] == []
    dispatch_id = cli.json("jobs", "run", "nightly")["dispatch_id"]  # works while disabled
    with sqlite3.connect(cli.db) as conn:
        rows = conn.execute("SELECT id, kind, status FROM dispatches").fetchall()
    assert rows == [(dispatch_id, "run_now", "queued")]
    again = cli.json("jobs", "enable", "nightly")
    assert again["enabled"] is True
    assert _next(cli) == before  # re-enabled: recomputed; run-now did not move it
