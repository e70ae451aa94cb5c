"""``shepherd groups ...`` in-process: create, report, heartbeat, list, show, ``--json``,
the summary queued once, and the bad-input matrix (exit 2 naming the flag or field,
nothing stored; an unknown group exits 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import Cli, clean_cli


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return clean_cli(tmp_path, capsys, monkeypatch, "cli.db")


def test_a_group_from_create_to_summary(cli: Cli) -> None:
    gid = int(cli.ok("groups", "create", "fan", "--members", "a,b", "--to", "room-7").strip())
    g = cli.json("groups", "show", "fan")
    assert g["id"] == gid and g["timeout"] == 600 and g["heartbeat_window"] == 300
    assert [m["status"] for m in g["members"]] == ["pending", "pending"]
    cli.ok("groups", "report", "fan", "a", "started")
    cli.ok("groups", "heartbeat", str(gid), "a")
    assert cli.json("groups", "show", "fan")["members"][0]["last_heartbeat"] is not None
    cli.ok("groups", "report", "fan", "a", "completed", "-m", "done well")
    out = cli.ok("groups", "report", "fan", "b", "failed", "--message", "boom")
    assert "failed: 1/2 ok" in out
    g = cli.json("groups", "show", "fan")
    assert g["status"] == "failed"
    assert g["summary"] == "Task group fan failed: 1/2 ok\n[ok] a: done well\n[FAILED] b: boom"
    assert cli.rows("SELECT kind, target, body FROM deliveries") == [
        ("group", "room-7", g["summary"])
    ]
    assert "[FAILED] b: boom" in cli.ok("groups", "show", "fan")
    listed = cli.json("groups", "list", "--status", "failed")
    assert [x["name"] for x in listed] == ["fan"]
    assert "fan" in cli.ok("groups", "list")
    code, _, err = cli("groups", "report", "fan", "b", "completed")
    assert code == 2 and "already failed" in err
    assert cli.rows("SELECT COUNT(*) FROM deliveries") == [(1,)]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["g", "--members", ""], "--members"),
        (["g", "--members", "a,b,a"], "--members"),
        (["g", "--members", "a,,b"], "--members"),
        (["g", "--members", "a", "--timeout", "0"], "--timeout"),
        (["g", "--members", "a", "--timeout", "400d"], "--timeout"),
        (["g", "--members", "a", "--heartbeat-window", "0"], "--heartbeat-window"),
        (["bad name", "--members", "a"], "NAME"),
        (["g", "--members", "a", "--to", " "], "--to"),
    ],
)
def test_bad_create_flags_exit_2_and_store_nothing(cli: Cli, argv: list[str], needle: str) -> None:
    cli.ok("groups", "create", "first", "--members", "x")
    code, _, err = cli("groups", "create", *argv)
    assert code == 2 and needle in err, err
    assert cli.rows("SELECT COUNT(*) FROM task_groups") == [(1,)]


def test_bad_reports_exit_with_a_clear_error_and_change_nothing(cli: Cli) -> None:
    cli.ok("groups", "create", "g", "--members", "a")
    for argv, code, needle in (
        (("report", "nope", "a", "started"), 1, "no task group 'nope'"),
        (("report", "g", "zz", "started"), 2, "member"),
        (("report", "g", "a", "finished"), 2, "status"),
        (("heartbeat", "g", "zz"), 2, "member"),
        (("show", "77"), 1, "no task group '77'"),
    ):
        got, _, err = cli("groups", *argv)
        assert got == code and needle in err, (argv, err)
    code, _, err = cli("groups", "create", "g", "--members", "b")
    assert code == 2 and "exists" in err
    assert cli.rows("SELECT status, last_heartbeat FROM task_group_members") == [("pending", None)]
