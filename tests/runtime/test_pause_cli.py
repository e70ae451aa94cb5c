"""``pause | resume | pauses | drain``, ``--rate`` / ``--burst`` and disable vs pause
through ``main(argv)`` (no daemon: the store's side; tests/e2e/test_pause_daemon.py has
the daemon's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import Cli, clean_cli


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    c = clean_cli(tmp_path, capsys, monkeypatch, "p.db")
    c.ok("jobs", "add", "nightly", "--executor", "shell", "--target", "true", "--pool", "db")
    return c


def test_pause_list_and_resume_every_scope(cli: Cli) -> None:
    paused = cli.json("pause", "job", "nightly", "--reason", "upgrade")
    assert paused["key"] == "job:nightly" and paused["reason"] == "upgrade"
    assert paused["by"].startswith("cli:") and paused["paused_at"].endswith("Z")
    assert paused["serving"] is False
    cli.ok("pause", "pool", "db")
    cli.ok("pause", "executor", "shell")
    assert "paused runtime" in cli.ok("pause", "--all")
    assert [p["key"] for p in cli.json("pauses")] == [
        "job:nightly", "pool:db", "executor:shell", "runtime",
    ]  # fmt: skip
    assert "upgrade" in cli.ok("pauses")
    status = cli.json("status")
    assert [p["key"] for p in status["pauses"]] == [p["key"] for p in cli.json("pauses")]
    assert "job:nightly" in cli.ok("status") and "upgrade" in cli.ok("status")
    assert cli.json("resume", "job", "nightly") == {"resumed": ["job:nightly"]}
    assert cli.json("resume", "--all") == {"resumed": ["executor:shell", "pool:db", "runtime"]}
    assert cli.json("pauses") == []
    assert "nothing was paused" in cli.ok("resume", "--all")


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (("pause", "queue", "x"), 2, "scope"),
        (("pause",), 2, "scope"),
        (("pause", "job"), 2, "name"),
        (("pause", "runtime", "x"), 2, "name"),
        (("pause", "--all", "job", "x"), 2, "--all"),
        (("pause", "job", "nope"), 1, "no job named 'nope'"),
        (("pause", "pool", "nope"), 1, "no pool named 'nope'"),
        (("pause", "executor", "nope"), 1, "no executor named 'nope'"),
        (("pause", "agent", "nope"), 1, "no agent named 'nope'"),
        (("pause", "job", "nightly", "--reason", "x" * 1001), 2, "reason"),
        (("resume", "job", "nightly"), 1, "not paused"),
        (("resume", "all", "x"), 2, "name"),
        (("resume", "bogus", "x"), 2, "scope"),
        (("drain", "--timeout", "soon"), 2, "--timeout"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    cli: Cli, argv: tuple[str, ...], code: int, words: str
) -> None:
    got, _, err = cli(*argv)
    assert got == code and words in err, err
    assert cli.rows("SELECT * FROM pauses") == []


def test_drain_without_a_daemon_pauses_the_runtime_and_reports(cli: Cli) -> None:
    data = cli.json("drain", "--timeout", "1s")
    assert (data["drained"], data["waited_for"], data["running"]) == (True, 0, 0)
    assert data["serving"] is False and data["paused"]["key"] == "runtime"
    assert [p["key"] for p in cli.json("pauses")] == ["runtime"]


def test_disable_refuses_enqueue_run_now_still_queues_pause_keeps_enqueue(cli: Cli) -> None:
    cli.ok("jobs", "add", "held", "--executor", "shell", "--target", "true")
    cli.ok("pause", "job", "held")
    assert cli.json("enqueue", "held")["id"] > 0  # a paused job takes work, and holds it
    cli.ok("jobs", "disable", "nightly")
    code, _, err = cli("enqueue", "nightly")
    assert code == 2 and "job" in err and "disabled" in err and "jobs run" in err
    run_now = cli.json("jobs", "run", "nightly")["dispatch_id"]
    assert cli.rows("SELECT id, job_name, kind, status FROM dispatches ORDER BY id") == [
        (1, "held", "enqueue", "queued"),
        (run_now, "nightly", "run_now", "queued"),
    ]


def test_rate_and_burst_flags_validate_and_round_trip_through_export(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("jobs", "update", "nightly", "--rate", "10/s", "--burst", "20")
    spec = cli.json("jobs", "show", "nightly")["spec"]
    assert (spec["rate"], spec["burst"]) == ("10/s", 20)
    for flags, flag in [
        (("--rate", "10/parsec"), "--rate"),
        (("--rate", "0/s"), "--rate"),
        (("--burst", "0"), "--burst"),
        (("--burst", "1000001"), "--burst"),
    ]:
        code, _, err = cli("jobs", "update", "nightly", *flags)
        assert code == 2 and flag in err, err
    code, _, err = cli("jobs", "add", "x", "--executor", "shell", "--target", "t", "--burst", "3")
    assert code == 2 and "--burst" in err and "rate" in err
    assert cli.json("jobs", "show", "nightly")["spec"]["rate"] == "10/s"  # nothing stored
    out = tmp_path / "jobs.toml"
    cli.ok("jobs", "export", "-o", str(out))
    assert 'rate = "10/s"' in out.read_text() and "burst = 20" in out.read_text()
    cli.ok("jobs", "rm", "nightly")
    cli.ok("jobs", "add", "--file", str(out))
    again = cli.json("jobs", "show", "nightly")["spec"]
    assert (again["rate"], again["burst"]) == ("10/s", 20)
    cli.ok("jobs", "update", "nightly", "--rate", "none", "--burst", "none")
    assert cli.json("jobs", "show", "nightly")["spec"]["rate"] is None


def test_config_rates_errors_name_the_field(cli: Cli, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[rates.executor.shell]\nrate = "10/parsec"\n')
    code, _, err = cli("--config", str(cfg), "status")
    assert code == 2 and "rates.executor.shell.rate" in err
