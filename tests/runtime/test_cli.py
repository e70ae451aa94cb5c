"""The ``shepherd`` CLI, called in-process through ``main(argv)``.

Commands that need runs go through the real daemon path (``run --exit-when-idle``),
in-process; ``tests/e2e`` starts it as a subprocess and kills it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from shepherd.runtime._cli_demo import DEMO_JOBS_TOML
from shepherd.runtime.cli import main
from shepherd.runtime.config import load_config

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """``main(argv)`` against one database, capturing output."""

    def __init__(self, db: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.db = db
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--database", self.db, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *argv: str) -> str:
        code, out, err = self(*argv)
        assert code == 0, f"{argv} exited {code}: {err}"
        return out

    def json(self, *argv: str) -> Any:
        return json.loads(self.ok(*argv, "--json"))

    def rows(self, table: str) -> int:
        if not Path(self.db).exists():
            return 0
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def snapshot(self) -> tuple[int, int, int]:
        return self.rows("jobs"), self.rows("dispatches"), self.rows("runs")


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)  # no stray ./shepherd.toml
    for name in ("DATABASE", "CONCURRENCY", "LOG_LEVEL"):
        monkeypatch.delenv(f"SHEPHERD_{name}", raising=False)
    return Cli(str(tmp_path / "cli.db"), capsys)


def _add_shell(cli: Cli, name: str, command: str, *flags: str) -> None:
    cli.ok("jobs", "add", name, "--executor", "shell", "--target", command, *flags)


# -- config init -------------------------------------------------------------------------


def test_config_init_writes_a_loadable_file_and_refuses_to_overwrite(cli: Cli) -> None:
    path = Path("conf/shepherd.toml")
    assert "wrote conf/shepherd.toml" in cli.ok("config", "init", str(path))
    cfg = load_config(path, env={})
    assert cfg.concurrency == 64 and cfg.shutdown_grace == 30.0

    path.write_text("# mine\n")
    code, _, err = cli("config", "init", str(path))
    assert code == 1 and "exists" in err and "--force" in err
    assert path.read_text() == "# mine\n"

    cli.ok("config", "init", str(path), "--force")
    assert "concurrency" in path.read_text()


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes" in out and "3 store error" in out and "4 supervisor escalation" in out


# -- jobs -------------------------------------------------------------------------------


def test_jobs_add_list_show_rm_from_flags(cli: Cli) -> None:
    _add_shell(
        cli,
        "nightly",
        "echo report",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--priority",
        "high",
        "--timeout",
        "10m",
        "--max-attempts",
        "5",
        "--retry-base",
        "2s",
        "--overlap",
        "skip",
        "--guarantee",
        "at-least-once",
    )
    _add_shell(cli, "tick", "true", "--every", "90s", "--disabled")

    listed = cli.json("jobs", "list")
    assert [j["name"] for j in listed] == ["nightly", "tick"]
    assert listed[0]["schedule"] == "cron 0 3 * * * (Europe/Berlin)"
    assert listed[1]["enabled"] is False and listed[1]["next_run_at"] is None

    shown = cli.json("jobs", "show", "nightly")
    spec = shown["spec"]
    assert spec["executor"] == "shell" and spec["target"] == "echo report"
    assert spec["priority"] == "high" and spec["timeout"] == 600.0
    assert spec["retry"]["max_attempts"] == 5 and spec["retry"]["base"] == 2.0
    assert spec["overlap"] == "skip" and spec["delivery_guarantee"] == "at-least-once"
    assert shown["next_run_at"].endswith("Z")  # ISO UTC
    assert "nightly" in cli.ok("jobs", "list")

    assert cli.json("jobs", "rm", "tick") == {"removed": "tick"}
    code, _, err = cli("jobs", "rm", "tick")
    assert code == 1 and "no job named 'tick'" in err
    assert cli.rows("jobs") == 1


def test_jobs_add_from_toml_and_json_files(cli: Cli, tmp_path: Path) -> None:
    many = tmp_path / "jobs.toml"
    many.write_text(
        '[[jobs]]\nname = "a"\nexecutor = "shell"\ntarget = "echo a"\nevery = "1h"\n\n'
        '[[jobs]]\nname = "b"\nexecutor = "shell"\ntarget = "echo b"\n'
        'retry = { max_attempts = 2, base = "1s" }\n'
    )
    saved = cli.json("jobs", "add", "--file", str(many))
    assert [j["name"] for j in saved] == ["a", "b"]
    assert saved[0]["next_run_at"] is not None

    one = tmp_path / "one.toml"
    one.write_text('name = "c"\nexecutor = "shell"\ntarget = "echo c"\n')
    cli.ok("jobs", "add", "--file", str(one))
    as_json = tmp_path / "d.json"
    as_json.write_text(json.dumps([{"name": "d", "executor": "shell", "target": "echo d"}]))
    cli.ok("jobs", "add", "--file", str(as_json))
    assert [j["name"] for j in cli.json("jobs", "list")] == ["a", "b", "c", "d"]


BAD_FLAGS = [
    (["--cron", "* * *"], "--cron"),
    (["--cron", "0 3 * * *", "--tz", "Mars/Olympus"], "--tz"),
    (["--priority", "urgent"], "--priority"),
    (["--timeout", "5 parsecs"], "--timeout"),
    (["--every", "soon"], "--every"),
    (["--payload", "[1, 2]"], "--payload"),
    (["--payload", "{not json"], "--payload"),
    (["--at", "tomorrow"], "--at"),
    (["--cron", "0 3 * * *", "--every", "1h"], "--cron/--at/--every"),
    (["--max-attempts", "0"], "--max-attempts"),
    (["--executor", "teleport"], "--executor"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS, ids=[n for _, n in BAD_FLAGS])
def test_jobs_add_bad_flag_is_named_and_stores_nothing(
    cli: Cli, flags: list[str], named: str
) -> None:
    _add_shell(cli, "existing", "true")
    before = cli.snapshot()
    code, _, err = cli("jobs", "add", "bad", "--executor", "shell", "--target", "x", *flags)
    assert code == 2
    assert named in err
    assert cli.snapshot() == before


BAD_FILES = [
    (
        '[[jobs]]\nname = "ok"\nexecutor = "shell"\ntarget = "x"\n\n'
        '[[jobs]]\nname = "bad"\nexecutor = "shell"\ntarget = "x"\nbogus = 1\n',
        "jobs[1] (bad)",
        "bogus",
    ),
    ('name = "bad"\nexecutor = "shell"\ntarget = "x"\ncron = "61 * * * *"\n', "jobs[0]", "cron"),
    (
        'name = "bad"\nexecutor = "shell"\ntarget = "x"\nretry = { base = "fast" }\n',
        "jobs[0]",
        "retry.base",
    ),
    ('name = "bad"\nexecutor = "shell"\ntarget = "x"\ntz = "Nowhere/City"\n', "jobs[0]", "tz"),
    ("name = 'unterminated\n", "jobs.toml", "TOML"),
    (
        '[[jobs]]\nname = "x"\nexecutor = "shell"\ntarget = "a"\n'
        '[[jobs]]\nname = "x"\nexecutor = "shell"\ntarget = "b"\n',
        "jobs.toml",
        "twice",
    ),
]


@pytest.mark.parametrize(("text", "where", "field"), BAD_FILES, ids=[f for *_, f in BAD_FILES])
def test_jobs_add_bad_file_names_job_and_field_and_stores_nothing(
    cli: Cli, tmp_path: Path, text: str, where: str, field: str
) -> None:
    _add_shell(cli, "existing", "true")
    before = cli.snapshot()
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    code, _, err = cli("jobs", "add", "--file", str(path))
    assert code == 2, err
    assert where in err and field in err
    assert cli.snapshot() == before


# -- enqueue, status, cancel -------------------------------------------------------------


def test_enqueue_and_status_json(cli: Cli) -> None:
    _add_shell(cli, "echo", "echo hi")
    first = cli.json("enqueue", "echo", "--payload", '{"n": 1}', "--priority", "high")
    assert first["duplicate"] is False
    assert cli.ok("enqueue", "echo", "--delay", "1h").strip() == str(first["id"] + 1)
    keyed = cli.json(
        "enqueue",
        "echo",
        "--idempotency-key",
        "k-1",
        "--not-before",
        "2030-01-01T00:00:00Z",
        "--expires-in",
        "1d",
        "--max-attempts",
        "2",
    )
    again = cli.json("enqueue", "echo", "--idempotency-key", "k-1")
    assert again == {"id": keyed["id"], "job": "echo", "duplicate": True}

    status = cli.json("status")
    assert status["dispatches"]["queued"] == 3
    assert status["daemon"] == {"serving": False, "pid": None}
    assert status["jobs"] == 1 and status["dead_letters"] == 0
    assert status["instance"] is None  # no runtime has served this file yet
    assert "not running" in cli.ok("status")

    with sqlite3.connect(cli.db) as conn:
        row = conn.execute(
            "SELECT priority, max_attempts, origin, payload FROM dispatches WHERE id = ?",
            (first["id"],),
        ).fetchone()
    assert row[0] == 1 and row[2].startswith("cli:") and json.loads(row[3]) == {"n": 1}


BAD_ENQUEUE = [
    (["--priority", "asap"], "--priority"),
    (["--delay", "later"], "--delay"),
    (["--expires-in", "-5"], "--expires-in"),
    (["--payload", '"text"'], "--payload"),
    (["--payload", "{oops"], "--payload"),
    (["--not-before", "2030-01-01T00:00:00"], "--not-before"),
    (["--not-before", "someday"], "--not-before"),
    (["--max-attempts", "zero"], "--max-attempts"),
    (["--delay", "1m", "--not-before", "2030-01-01T00:00:00Z"], "--delay"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_ENQUEUE, ids=[str(f) for f, _ in BAD_ENQUEUE])
def test_enqueue_bad_flag_is_named_and_stores_nothing(
    cli: Cli, flags: list[str], named: str
) -> None:
    _add_shell(cli, "echo", "echo hi")
    before = cli.snapshot()
    code, _, err = cli("enqueue", "echo", *flags)
    assert code == 2 and named in err
    assert cli.snapshot() == before


def test_enqueue_unknown_job_exits_1(cli: Cli) -> None:
    _add_shell(cli, "echo", "echo hi")
    code, _, err = cli("enqueue", "nope")
    assert code == 1 and "no job named 'nope'" in err
    assert cli.rows("dispatches") == 0


def test_store_errors_exit_3(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("--database", str(tmp_path / "missing.db"), "status")
    assert code == 1 and "missing.db does not exist yet: run `shepherd run`" in err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    code, _, err = cli("--database", str(junk), "jobs", "list")
    assert code == 3 and "store error" in err


def test_bad_config_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("concurrency = 0\n")
    code, _, err = cli("--config", str(conf), "status")
    assert code == 2 and "concurrency" in err


def test_cancel_queued_then_already_cancelled(cli: Cli) -> None:
    _add_shell(cli, "echo", "echo hi")
    dispatch_id = cli.json("enqueue", "echo")["id"]
    assert cli.json("cancel", str(dispatch_id)) == {"id": dispatch_id, "result": "cancelled"}
    code, _, err = cli("cancel", str(dispatch_id))  # as `--url` (the API's 409): it ended
    assert code == 1 and "already ended (cancelled); nothing to cancel" in err
    assert cli.json("status")["dispatches"]["cancelled"] == 1
    code, _, err = cli("cancel", "999")
    assert code == 1 and "no dispatch 999" in err


# -- runs and dead letters, through the real daemon path -------------------------------


def _run_until_idle(cli: Cli) -> None:
    code, _, err = cli("run", "--exit-when-idle", "--for", "30s")
    assert code == 0, err
    assert "daemon.idle" in err  # it stopped because it was idle, not at the deadline


def test_runs_and_dlq_round_trip(cli: Cli) -> None:
    _add_shell(cli, "fail", "echo out; echo boom >&2; exit 7", "--max-attempts", "1")
    _add_shell(cli, "echo", "echo hello")
    failed = cli.json("enqueue", "fail")["id"]
    done = cli.json("enqueue", "echo")["id"]
    _run_until_idle(cli)

    runs = cli.json("runs", "list")
    assert {(r["dispatch_id"], r["status"]) for r in runs} == {(failed, "error"), (done, "ok")}
    assert [r["status"] for r in cli.json("runs", "list", "--job", "echo")] == ["ok"]
    bad_run = next(r for r in runs if r["dispatch_id"] == failed)
    shown = cli.json("runs", "show", str(bad_run["id"]))
    assert shown["exit_code"] == 7 and "boom" in shown["stderr"] and "out" in shown["stdout"]
    assert shown["started_at"].endswith("Z")
    human = cli.ok("runs", "show", str(bad_run["id"]))
    assert "--- stderr ---" in human and "boom" in human
    code, _, err = cli("runs", "show", "999")
    assert code == 1 and "no run 999" in err

    dead = cli.json("dlq", "list")
    assert [d["id"] for d in dead] == [failed] and dead[0]["dead_reason"] == "attempts"
    assert "code 7" in cli.ok("dlq", "list")
    code, _, _ = cli("cancel", str(done))
    assert code == 1  # already ended

    assert cli.json("dlq", "retry", str(failed)) == {"retried": [failed], "not_dead": []}
    assert cli.json("status")["dispatches"]["queued"] == 1
    code, _, err = cli("dlq", "retry", str(done))
    assert code == 1 and f"not dead letters: {done}" in err
    _run_until_idle(cli)
    assert [d["id"] for d in cli.json("dlq", "list")] == [failed]
    assert cli.json("dlq", "purge", "--older-than", "1h") == {"purged": 0}
    code, _, _ = cli("dlq", "purge")
    assert code == 2
    assert cli.json("dlq", "purge", "--all") == {"purged": 1}
    assert cli.json("dlq", "list") == []
    status = cli.json("status")
    assert status["dispatches"]["dead"] == 0
    # the last runtime left its health snapshot behind
    assert status["instance"]["stopped_at"] is not None
    assert status["instance"]["health"]["supervisor"]["name"] == "root"
    assert "restarts 0" in cli.ok("status")


def test_demo_runs_to_idle_and_shows_priorities(cli: Cli, tmp_path: Path) -> None:
    out = cli.json("demo", "--dir", str(tmp_path / "demo"))
    assert out["exit_code"] == 0
    assert out["status"]["dispatches"]["queued"] == 0
    assert {(d["job_name"], d["outcome"]) for d in out["dead_letters"]} == {
        ("flaky", "error"),
        ("slow", "timeout"),
    }
    first_attempts = [r for r in out["runs"] if r["attempt"] == 1 and r["job_name"] == "hello"]
    payloads = [r["stdout"].strip().rsplit(" ", 1)[-1] for r in first_attempts]
    assert payloads == ['{"n":4}', '{"n":3}', '{"n":2}', '{"n":1}']  # critical … background
    # the python job, served from the demo's app, got its typed payload
    [greet] = [r for r in out["runs"] if r["job_name"] == "greet"]
    assert greet["status"] == "ok" and greet["result"] == {"said": "hello ada! hello ada!"}
    assert out["refused"] == "payload.name: Expected str, got int"


def test_examples_demo_toml_holds_the_demo_jobs() -> None:
    example = tomllib.loads((ROOT / "examples" / "demo.toml").read_text())
    assert example["jobs"] == tomllib.loads(DEMO_JOBS_TOML)["jobs"]
    load_config(ROOT / "examples" / "demo.toml", env={})


def test_python_dash_m_runtime_is_the_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shepherd", "--database", str(tmp_path / "none.db"), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "shepherd: error:" in proc.stderr


def test_errors_map_to_documented_exit_codes() -> None:
    from shepherd.runtime.cli import classify
    from shepherd.store.errors import ConfigError, DatabaseLocked, NotFound, SupervisorEscalation

    escalation = SupervisorEscalation("root", "dispatcher", RuntimeError("boom"))
    assert classify(escalation)[0] == 4 and "SupervisorEscalation" in classify(escalation)[1]
    assert classify(DatabaseLocked("x.db: locked"))[0] == 3
    assert classify(NotFound("no job named 'x'"))[0] == 1
    assert classify(ConfigError("bad", field="--tz"))[0] == 2
    group = BaseExceptionGroup("tg", [ExceptionGroup("inner", [DatabaseLocked("held")])])
    assert classify(group) == (3, "store error (DatabaseLocked): held")
    assert classify(ValueError("a bug")) == (None, "")
