"""Workflow chains through the ``shepherd`` CLI, in-process (``main(argv)``): the job
flags, job files, ``jobs tree``, ``cancel --cascade`` and the bad-input matrix."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from shepherd.actors.primitives.clock import FakeClock
from shepherd.runtime import Config, JobSpec, RunContext, Runtime
from shepherd.runtime.cli import main


class Cli:
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

    def jobs(self) -> list[tuple[Any, ...]]:
        if not Path(self.db).exists():
            return []
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT name, parent, spec FROM jobs ORDER BY id").fetchall()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE", "CONCURRENCY", "LOG_LEVEL"):
        monkeypatch.delenv(f"SHEPHERD_{name}", raising=False)
    return Cli(str(tmp_path / "cli.db"), capsys)


def _shell(cli: Cli, name: str, command: str, *flags: str) -> None:
    cli.ok("jobs", "add", name, "--executor", "shell", "--target", command, *flags)


def test_chain_flags_show_tree_and_json(cli: Cli) -> None:
    _shell(cli, "build", "echo built", "--max-fanout", "3")
    _shell(cli, "test", "echo tested", "--parent", "build", "--trigger-on", "success")
    got = cli.json(
        "jobs", "add", "notify", "--executor", "shell", "--target", "echo hi",
        "--parent", "test", "--trigger-on", "complete",
        "--trigger-condition", "contains:tested", "--trigger-delay", "30s",
    )  # fmt: skip
    assert got[0]["name"] == "notify"
    _shell(cli, "fix", "echo fix", "--parent", "build", "--trigger-on", "failure", "--disabled")
    spec = cli.json("jobs", "show", "notify")["spec"]
    assert (spec["parent"], spec["trigger_on"], spec["trigger_condition"]) == (
        "test", "complete", "contains:tested",
    )  # fmt: skip
    text = cli.ok("jobs", "tree")
    assert text.splitlines() == [
        "build  (max fan-out 3)",
        "├── fix  (on failure, disabled)",
        "└── test  (on success)",
        "    └── notify  (on complete, if contains:tested, after 30s)",
    ]
    [tree] = cli.json("jobs", "tree")
    assert tree["name"] == "build" and tree["max_fanout"] == 3
    assert [c["name"] for c in tree["children"]] == ["fix", "test"]
    notify = tree["children"][1]["children"][0]
    assert notify == {
        "name": "notify", "enabled": True, "parent": "test", "trigger_on": "complete",
        "trigger_condition": "contains:tested", "trigger_delay": 30.0, "children": [],
    }  # fmt: skip
    [sub] = cli.json("jobs", "tree", "test")
    assert sub["name"] == "test" and [c["name"] for c in sub["children"]] == ["notify"]
    code, _, err = cli("jobs", "tree", "ghost")
    assert code == 1 and "ghost" in err


def _ends_bad(cli: Cli, argv: list[str], flag: str, words: str) -> None:
    before = cli.jobs()
    code, _, err = cli(*argv)
    assert code == 2, err
    assert flag in err and words in err, err
    assert cli.jobs() == before


def test_bad_chain_input_names_the_flag_and_stores_nothing(cli: Cli) -> None:
    _shell(cli, "a", "true")
    _shell(cli, "b", "true", "--parent", "a", "--trigger-on", "success")
    add = ["jobs", "add", "x", "--executor", "shell", "--target", "true"]
    child = [*add, "--parent", "a", "--trigger-on", "success"]
    _ends_bad(cli, [*add, "--parent", "ghost", "--trigger-on", "success"], "--parent", "ghost")
    _ends_bad(cli, [*add, "--parent", "a"], "--trigger-on", "needs trigger_on")
    _ends_bad(cli, [*add, "--trigger-on", "success"], "--trigger-on", "only a child")
    _ends_bad(cli, [*child, "--trigger-condition", "foo:bar"], "--trigger-condition", "contains:")
    _ends_bad(cli, [*child, "--trigger-condition", "regex:("], "--trigger-condition", "regular")
    _ends_bad(cli, [*child, "--cron", "* * * * *"], "--cron", "schedule of its own")
    _ends_bad(
        cli,
        ["jobs", "update", "a", "--parent", "b", "--trigger-on", "success"],
        "--parent",
        "cycle a → b → a",
    )
    for i in range(1, 10):  # a → b → c1 … c9: c9 is at depth 10
        parent = "b" if i == 1 else f"c{i - 1}"
        _shell(cli, f"c{i}", "true", "--parent", parent, "--trigger-on", "success")
    _ends_bad(cli, [*add, "--parent", "c9", "--trigger-on", "success"], "--parent", "depth 11")
    _ends_bad(cli, ["jobs", "rm", "a"], "name", "parent of b")


def test_job_file_children_first_and_bad_graph_stores_nothing(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "chain.toml"
    good.write_text(
        "[[jobs]]\nname = 'child'\nexecutor = 'shell'\ntarget = 'true'\n"
        "parent = 'root'\ntrigger_on = 'failure'\ntrigger_delay = '5m'\n"
        "[[jobs]]\nname = 'root'\nexecutor = 'shell'\ntarget = 'true'\n"
    )
    cli.ok("jobs", "add", "--file", str(good))
    assert [(r[0], r[1]) for r in cli.jobs()] == [("root", None), ("child", "root")]
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "jobs": [
                    {"name": "fine", "executor": "shell", "target": "true"},
                    {"name": "lost", "executor": "shell", "target": "true",
                     "parent": "nowhere", "trigger_on": "success"},
                ]
            }
        )
    )  # fmt: skip
    before = cli.jobs()
    code, _, err = cli("jobs", "add", "--file", str(bad))
    assert code == 2 and "jobs[1] (lost)" in err and "unknown parent job 'nowhere'" in err
    assert cli.jobs() == before  # not even the good job of the file


def test_export_round_trips_a_chain(cli: Cli, tmp_path: Path) -> None:
    _shell(cli, "p", "echo p")
    _shell(
        cli, "c", "echo c", "--parent", "p", "--trigger-on", "success",
        "--trigger-condition", r"regex:\d", "--trigger-delay", "10s",
    )  # fmt: skip
    out = tmp_path / "jobs.toml"
    cli.ok("jobs", "export", "-o", str(out))
    specs = {r[0]: json.loads(r[2]) for r in cli.jobs()}
    cli.ok("jobs", "rm", "c")
    cli.ok("jobs", "rm", "p")
    cli.ok("jobs", "add", "--file", str(out))
    assert {r[0]: json.loads(r[2]) for r in cli.jobs()} == specs


def test_chain_runs_through_the_daemon(cli: Cli) -> None:
    _shell(cli, "parent", "echo 'ALL GREEN'")
    _shell(cli, "now", "echo child", "--parent", "parent", "--trigger-on", "success")
    _shell(cli, "never", "true", "--parent", "parent", "--trigger-on", "failure")
    cli.json("enqueue", "parent")
    cli.ok("run", "--exit-when-idle", "--for", "20s")
    with sqlite3.connect(cli.db) as conn:
        rows = conn.execute(
            "SELECT job_name, status, payload FROM dispatches WHERE kind = 'chain' ORDER BY id"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("now", "done")]
    trigger = json.loads(rows[0][2])["trigger"]
    assert trigger["parent_job"] == "parent" and trigger["exit_code"] == 0
    assert trigger["stdout"].strip() == "ALL GREEN"


async def _delayed_children(db: str) -> int:
    """A parent run that ended with two children waiting an hour: its dispatch id."""

    async def ok(ctx: RunContext) -> str:
        return "ok"

    clock = FakeClock()
    cfg = Config(database=db, shutdown_grace=0)
    async with Runtime.open(cfg, clock=clock, targets={"ok": ok}) as rt:
        await rt.add_job(JobSpec(name="parent", target="ok"))
        for name in ("c1", "c2"):
            await rt.add_job(
                JobSpec(name=name, target="ok", parent="parent", trigger_on="success",
                        trigger_delay=3600)
            )  # fmt: skip
        d = await rt.enqueue("parent")
        await rt.wait(d, timeout=10)
        return d


def test_cancel_cascade(cli: Cli) -> None:
    d = anyio.run(_delayed_children, cli.db)
    got = cli.json("cancel", str(d), "--cascade")
    assert got["result"] == "done" and len(got["children_cancelled"]) == 2
    with sqlite3.connect(cli.db) as conn:
        rows = conn.execute("SELECT status FROM dispatches WHERE kind = 'chain'").fetchall()
    assert rows == [("cancelled",), ("cancelled",)]
    code, _, err = cli("cancel", str(d), "--cascade")  # nothing left to cancel
    assert code == 1 and "already ended" in err
    code, _, err = cli("cancel", str(d))
    assert code == 1 and "already ended" in err


def test_a_child_made_a_root_loses_its_trigger(cli: Cli) -> None:
    _shell(cli, "p", "true")
    _shell(
        cli, "c", "true", "--parent", "p", "--trigger-on", "success",
        "--trigger-condition", "contains:x", "--trigger-delay", "5m",
    )  # fmt: skip
    code, _, err = cli("jobs", "update", "c", "--trigger-on", "bogus")
    assert code == 2 and "choose from complete, failure, success, none" in err
    cli.ok("jobs", "update", "c", "--parent", "none")
    spec = cli.json("jobs", "show", "c")["spec"]
    assert [spec[k] for k in ("parent", "trigger_on", "trigger_condition")] == [None] * 3
    assert cli.json("jobs", "tree") == []
    cli.ok("jobs", "rm", "p")  # no longer a parent
