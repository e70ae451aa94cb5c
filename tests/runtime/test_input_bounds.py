"""Bad values are refused at every edge, naming the field, before anything is stored.

Numeric bounds (CLI flags, config, job files, the Python API), JSON that is not JSON
(NaN), ``database = 5``, a bad ``[[jobs]]`` entry, an ``at`` in the past, every
executor the runtime has on ``jobs add``, and unknown executor options.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shepherd.runtime import Config, JobSpec, RetryPolicy, Runtime
from shepherd.runtime._cli_store import id_or_name, positive_int, row_id
from shepherd.runtime.cli import build_parser, main
from shepherd.runtime.config import load_config
from shepherd.store.bounds import MAX_ID
from shepherd.store.errors import ConfigError
from shepherd.store.models import EnqueueRequest, Seconds

HUGE = "100000000000000000000"  # 10**20: past SQLite's 64-bit INTEGER


class Cli:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp
        self.db = str(tmp / "cli.db")
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(["--database", self.db, *argv])
        out, err = self.capsys.readouterr()
        return code, out + err

    def ok(self, *argv: str) -> str:
        code, text = self(*argv)
        assert code == 0, f"{argv} exited {code}: {text}"
        return text

    def jobs(self) -> int:
        if not Path(self.db).exists():
            return 0
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE", "CONCURRENCY", "LOG_LEVEL"):
        monkeypatch.delenv(f"SHEPHERD_{name}", raising=False)
    return Cli(tmp_path, capsys)


def _refused(cli: Cli, *argv: str, names: str) -> str:
    before = cli.jobs()
    code, text = cli(*argv)
    assert code == 2, f"{argv} exited {code}: {text}"
    assert names in text, text
    assert cli.jobs() == before  # nothing stored
    return text


SHELL = ("jobs", "add", "j", "--executor", "shell", "--target", "true")


# -- numeric bounds -------------------------------------------------------------------


def test_jobs_add_max_attempts_past_64_bits_exits_2_naming_the_field(cli: Cli) -> None:
    text = _refused(cli, *SHELL, "--max-attempts", HUGE, names="--max-attempts")
    assert "1000" in text
    _refused(cli, *SHELL, "--max-attempts", "0", names="--max-attempts")
    cli.ok(*SHELL, "--max-attempts", "1000")


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (("--timeout", "31d"), "--timeout"),
        (("--timeout", "0"), "--timeout"),
        (("--every", "0"), "--every"),
        (("--every", "400d"), "--every"),
        (("--retry-base", "31d"), "--retry-base"),
        (("--options", json.dumps({"output_store": 10**20})), "output_store"),
    ],
)
def test_job_flags_out_of_bounds_name_the_flag(
    cli: Cli, flags: tuple[str, str], names: str
) -> None:
    _refused(cli, *SHELL, *flags, names=names)


def test_enqueue_values_out_of_bounds_name_the_flag(cli: Cli) -> None:
    cli.ok(*SHELL)
    for flags, names in (
        (("--max-attempts", HUGE), "--max-attempts"),
        (("--delay", "4000d"), "--delay"),
        (("--expires-in", "0"), "--expires-in"),
    ):
        code, text = cli("enqueue", "j", *flags)
        assert code == 2 and names in text, (flags, text)
    with sqlite3.connect(cli.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM dispatches").fetchone()[0] == 0


def test_ids_and_counts_past_64_bits_exit_2(cli: Cli) -> None:
    cli.ok(*SHELL)
    for argv in (("runs", "show", HUGE), ("cancel", HUGE), ("jobs", "next", "j", "-n", HUGE)):
        code, text = cli(*argv)
        assert code == 2, (argv, code, text)


def _commands(p: argparse.ArgumentParser, path: str = "") -> dict[str, argparse.ArgumentParser]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: p}
    out: dict[str, argparse.ArgumentParser] = {}
    for name, child in subs[0].choices.items():
        out.update(_commands(child, f"{path} {name}".strip()))
    return out


def test_every_id_argument_is_parsed_by_the_one_id_parser() -> None:
    """Row ids (``runs show ID``, ``groups show GROUP``, ``--reply-to``...) are bounded
    as the HTTP API bounds them; no argument is a bare ``int`` but a job field's, which
    ``validate_job`` bounds naming its flag. (An agent's id is a name, not a row id.)"""
    seen = set()
    for command, parser in _commands(build_parser()).items():
        for action in parser._actions:
            where = (command, action.dest)
            if re.search(r"(^|_)ids?$", action.dest) or action.dest in ("group", "reply_to"):
                if command.startswith("agents "):
                    assert action.type is None, where
                    continue
                assert action.type in (row_id, id_or_name), where
                seen.add(command)
            if action.type is int:
                assert command in ("jobs add", "jobs update"), where
    assert {"runs show", "cancel", "groups show", "groups report", "msg send"} <= seen


def test_ids_past_the_id_bound_exit_2_naming_the_argument(cli: Cli) -> None:
    cli.ok("groups", "create", "g", "--members", "a")
    over = str(MAX_ID + 1)
    for argv, names in (
        (("groups", "show", HUGE), "argument GROUP: must be <= 4611686018427387904"),
        (("groups", "heartbeat", HUGE, "a"), "argument GROUP"),
        (("groups", "report", over, "a", "started"), "argument GROUP"),
        (("groups", "show", "0"), "argument GROUP: must be >= 1"),
        (("runs", "show", over), "argument ID"),
        (("cancel", over), "argument DISPATCH_ID"),
        (("dlq", "retry", over), "argument ID"),
        (("approvals", "approve", over), "argument ID"),
        (("msg", "read", over), "argument ID"),
        (("msg", "send", "hi", "--from", "a", "--to", "b", "--reply-to", over), "--reply-to"),
    ):
        code, text = cli(*argv)
        assert code == 2 and names in text, (argv, code, text)
        assert "Traceback" not in text and "store error" not in text
    code, text = cli("groups", "show", str(MAX_ID))  # within the bound: looked up
    assert code == 1 and "no task group" in text, text
    assert "group g (#1) open" in cli.ok("groups", "heartbeat", "1", "a")


def test_every_limit_refuses_values_below_1(cli: Cli) -> None:
    limits = [
        (command, action.type)
        for command, parser in _commands(build_parser()).items()
        for action in parser._actions
        if action.dest == "limit"
    ]
    assert "spool status" in dict(limits) and len(limits) >= 6
    assert all(kind is positive_int for _, kind in limits), limits
    spool = ("spool", "status", "--dir", str(cli.tmp / "spool"))
    for value in ("0", "-1"):
        code, text = cli(*spool, "--limit", value)
        assert code == 2 and "argument --limit: must be >= 1" in text, (value, text)
    cli.ok(*spool, "--limit", "1")


def test_a_job_file_out_of_bounds_names_file_job_and_field(cli: Cli) -> None:
    path = cli.tmp / "jobs.toml"
    path.write_text(
        '[[jobs]]\nname = "a"\nexecutor = "shell"\ntarget = "true"\n'
        '[[jobs]]\nname = "b"\nexecutor = "shell"\ntarget = "true"\n'
        "retry = { max_attempts = 100000000000000000000 }\n"
    )
    text = _refused(cli, "jobs", "add", "--file", str(path), names="retry.max_attempts")
    assert "jobs[1] (b)" in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("concurrency = 100000000000000000000", "concurrency"),
        ("health_interval = 0", "health_interval"),
        ('shutdown_grace = "2d"', "shutdown_grace"),
        ("pools = { gpu = 0 }", "pools.gpu"),
        ("[delivery]\nmax_attempts = 100000000000000000000", "delivery.max_attempts"),
        ('[gateway]\nurl = "http://127.0.0.1:9"\nmax_connections = 0', "gateway.max_connections"),
        (
            '[[jobs]]\nname = "x"\nexecutor = "shell"\ntarget = "true"\n'
            "retry = { max_attempts = 100000000000000000000 }",
            "jobs[0].retry.max_attempts",
        ),
        ("database = 5", "database"),
    ],
)
def test_config_values_are_checked_naming_the_field(tmp_path: Path, body: str, field: str) -> None:
    path = tmp_path / "shepherd.toml"
    path.write_text(body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.field == field, info.value


def test_config_database_must_be_a_string(cli: Cli) -> None:
    (cli.tmp / "shepherd.toml").write_text("database = 5\n")
    code, text = cli("--config", "shepherd.toml", "status")
    assert code == 2 and "database" in text and "string" in text
    assert not (cli.tmp / "5").exists()


def test_a_bad_config_job_is_refused_by_every_command(cli: Cli) -> None:
    (cli.tmp / "shepherd.toml").write_text(
        '[[jobs]]\nname = "x"\nexecutor = "shell"\ntarget = "true"\ncron = "61 * * * *"\n'
    )
    for argv in (("status",), ("jobs", "list"), ("runs", "list"), (*SHELL,)):
        code, text = cli("--config", "shepherd.toml", *argv)
        assert code == 2 and "cron" in text and "jobs[0] (x)" in text, (argv, code, text)


def test_config_built_in_python_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        Config(concurrency=10**20)
    assert info.value.field == "concurrency"
    bad = JobSpec(name="x", retry=RetryPolicy(max_attempts=10**20))
    with pytest.raises(ConfigError) as info:
        Config(jobs=[bad])
    assert info.value.field == "jobs[0].retry.max_attempts"


# -- the Python API ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_python_api_checks_bounds_of_specs_and_enqueues(db_path: str) -> None:
    async def noop(ctx: Any) -> None:
        return None

    async with Runtime.open(Config(database=db_path), targets={"t": noop}) as rt:
        for spec, field in (
            (JobSpec(name="a", target="t", retry=RetryPolicy(max_attempts=10**20)), "retry"),
            (JobSpec(name="a", target="t", timeout=Seconds(1e20)), "timeout"),
            (JobSpec(name="a", target="t", max_queued=10**20), "max_queued"),
            (JobSpec(name="a", target="t", retry=RetryPolicy(jitter=float("nan"))), "jitter"),
            (JobSpec(name="a", target="t", payload={"x": float("nan")}), "payload.x"),
            (JobSpec(name="a", target="t", options={"nope": 1}), "options.nope"),
        ):
            with pytest.raises(ConfigError) as info:
                await rt.add_job(spec)
            assert field in (info.value.field or ""), info.value
        assert await rt.list_jobs() == []
        await rt.add_job(JobSpec(name="a", target="t"))
        with pytest.raises(ConfigError) as info:
            await rt.enqueue("a", max_attempts=10**20)
        assert info.value.field == "max_attempts"
        with pytest.raises(ConfigError) as info:
            await rt.enqueue("a", delay=10**20)
        assert info.value.field == "delay"
        with pytest.raises(ConfigError) as info:
            await rt.enqueue("a", {"x": float("inf")})
        assert info.value.field == "payload.x"
        with pytest.raises(ConfigError) as info:
            await rt.enqueue_many([EnqueueRequest(job="a", not_before=10**20)])
        assert info.value.field == "requests[0].not_before"
        assert await rt.dispatches() == []


# -- JSON that is not JSON -----------------------------------------------------------


def test_nan_and_infinity_are_not_json(cli: Cli) -> None:
    for payload in ('{"x": NaN}', '{"x": [Infinity]}', '{"x": -Infinity}'):
        _refused(cli, *SHELL, "--payload", payload, names="--payload")
        _refused(cli, *SHELL, "--options", payload, names="--options")
    cli.ok(*SHELL)
    code, text = cli("enqueue", "j", "--payload", '{"x": NaN}')
    assert code == 2 and "--payload" in text
    code, text = cli("jobs", "run", "j", "--payload", '{"x": NaN}')
    assert code == 2 and "--payload" in text
    js = cli.tmp / "job.json"
    js.write_text('{"name": "k", "executor": "shell", "target": "true", "payload": {"x": NaN}}')
    _refused(cli, "jobs", "add", "--file", str(js), names="NaN")
    toml = cli.tmp / "job.toml"
    toml.write_text('name = "k"\nexecutor = "shell"\ntarget = "true"\npayload = { x = nan }\n')
    _refused(cli, "jobs", "add", "--file", str(toml), names="payload.x")


# -- at in the past --------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def test_an_at_in_the_past_is_refused_unless_within_the_misfire_grace(cli: Cli) -> None:
    text = _refused(cli, *SHELL, "--at", _iso(time.time() - 3600), names="--at")
    assert "past" in text
    cli.ok(*SHELL, "--at", _iso(time.time() - 20))  # within 60 s: runs at once
    cli.ok(*SHELL, "--at", "in 10m")
    # changing another field of a one-shot whose instant has passed is not refused
    with sqlite3.connect(cli.db) as conn:
        spec = json.loads(conn.execute("SELECT spec FROM jobs WHERE name = 'j'").fetchone()[0])
        spec["at"] = _iso(time.time() - 3600)
        conn.execute("UPDATE jobs SET spec = ? WHERE name = 'j'", (json.dumps(spec),))
    cli.ok("jobs", "update", "j", "--priority", "high")
    cli.ok("jobs", "disable", "j")
    _refused(cli, "jobs", "update", "j", "--at", _iso(time.time() - 7200), names="--at")


# -- every executor, and its options -------------------------------------------------


def test_jobs_add_accepts_every_executor_the_runtime_has(cli: Cli) -> None:
    (cli.tmp / "gw.toml").write_text('[gateway]\nurl = "http://127.0.0.1:9"\n')
    base = ("--config", "gw.toml", "jobs", "add")
    msg = json.dumps({"message": "hello"})
    cli.ok(*base, "ag", "--executor", "agent", "--target", "main", "--payload", msg,
           "--options", json.dumps({"model": "m", "thinking": "high"}))  # fmt: skip
    cli.ok(*base, "ev", "--executor", "event", "--payload", msg,
           "--options", json.dumps({"mode": "next-heartbeat"}))  # fmt: skip
    cli.ok(*base, "wd", "--executor", "watchdog", "--target", "true",
           "--options", json.dumps({"timeout_min": 5, "alert_to": "@ops"}))  # fmt: skip
    cli.ok(*base, "sh", "--executor", "shell", "--target", "true",
           "--options", json.dumps({"cwd": "/tmp", "output_store": 4096}))  # fmt: skip
    assert cli.jobs() == 4
    # without a [gateway], agent and event jobs are refused naming why
    code, text = cli("jobs", "add", "ag2", "--executor", "agent", "--payload", msg)
    assert code == 2 and "[gateway]" in text


@pytest.mark.parametrize(
    ("executor", "extra"),
    [
        ("shell", ("--target", "true")),
        ("python", ("--target", "t")),
        ("agent", ("--payload", '{"message": "hi"}')),
        ("event", ("--payload", '{"message": "hi"}')),
        ("watchdog", ("--target", "true")),
    ],
)
def test_an_unknown_option_names_the_key_and_the_known_ones(
    cli: Cli, executor: str, extra: tuple[str, ...]
) -> None:
    (cli.tmp / "gw.toml").write_text('[gateway]\nurl = "http://127.0.0.1:9"\n')
    text = _refused(
        cli, "--config", "gw.toml", "jobs", "add", "j", "--executor", executor, *extra,
        "--options", '{"foo": 1}', names="foo",
    )  # fmt: skip
    assert f"unknown option for executor {executor}; known:" in text
    assert "delivery_to" in text  # announce delivery's options are known to all


def test_watchdog_timeout_min_is_bounded(cli: Cli) -> None:
    _refused(
        cli, "jobs", "add", "wd", "--executor", "watchdog", "--target", "true",
        "--options", json.dumps({"timeout_min": 10**20}), names="timeout_min",
    )  # fmt: skip


def test_list_flag_errors_name_the_flag_not_the_field(cli: Cli) -> None:
    gate = ("--approval", "--delivery-to", "@ops")
    for argv, names in (
        ((*SHELL, "--capabilities", "GPU!"), "--capabilities: 'GPU!' is not a capability"),
        ((*SHELL, *gate, "--approval-sources", "retry"), "--approval-sources: 'retry' is never"),
        ((*SHELL, "--capabilities", ",,"), "argument --capabilities: item 1 is empty"),
        ((*SHELL, "--capabilities", "gpu,,linux"), "argument --capabilities: item 2 is empty"),
        (("agents", "add", "a1", "--capabilities", "gpu,"), "--capabilities: item 2 is empty"),
    ):
        text = _refused(cli, *argv, names=names)
        assert "capabilities[" not in text and "sources[" not in text, text
    cli.ok(*SHELL, "--capabilities", "gpu, Linux")
    code, text = cli("enqueue", "j", "--capabilities", "GPU!")
    assert code == 2 and "--capabilities: 'GPU!' is not" in text and "[0]" not in text, text
    cli.ok("jobs", "update", "j", "--capabilities", "")  # an empty value clears them
    with sqlite3.connect(cli.db) as conn:
        [(spec,)] = conn.execute("SELECT spec FROM jobs").fetchall()
    assert json.loads(spec)["capabilities"] == []


def test_a_job_file_not_named_json_is_read_and_refused_as_toml(cli: Cli) -> None:
    bad = cli.tmp / "x.yaml"
    bad.write_text("name = \n")
    text = _refused(cli, "jobs", "add", "--file", str(bad), names="not valid TOML")
    assert "YAML" not in text and "read as TOML" in text
    bad_json = cli.tmp / "x.json"
    bad_json.write_text("{")
    _refused(cli, "jobs", "add", "--file", str(bad_json), names=f"{bad_json}: not valid JSON")
