"""Every job field from ``jobs add`` / ``jobs update`` flags and job files, and ``jobs
export`` → ``jobs add --file`` as a round trip, through the real CLI (a subprocess)."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shepherd.runtime._cli_jobflags import FLAGS
from shepherd.runtime.cli import build_parser
from shepherd.store.models import JobSpec, RetryPolicy


class Sh:
    """``python -m shepherd --database DB ...`` in a subprocess."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = str(tmp / "jobs.db")
        self.env = {**os.environ, "TZ": "UTC"}
        self.env.pop("SHEPHERD_PROGRESS", None)

    def __call__(
        self, *argv: str, stderr: Any = subprocess.PIPE
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shepherd", "--database", self.db, *argv],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
            cwd=self.tmp,
            env=self.env,
        )

    def ok(self, *argv: str) -> str:
        proc = self(*argv)
        assert proc.returncode == 0, f"{argv}: {proc.returncode} {proc.stderr}"
        return proc.stdout

    def spec(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.ok("jobs", "show", name, "--json"))["spec"])

    def jobs(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


@pytest.fixture
def sh(tmp_path: Path) -> Sh:
    return Sh(tmp_path)


def _fields(struct: type[msgspec.Struct]) -> list[str]:
    return [f.name for f in msgspec.structs.fields(struct)]


def test_every_job_field_has_a_flag_on_add_and_update() -> None:
    root = build_parser()
    sub = next(a for a in root._actions if isinstance(a, type(root._subparsers._group_actions[0])))
    jobs = sub.choices["jobs"]
    jobs_sub = next(a for a in jobs._actions if a.choices and "add" in a.choices)
    for command in ("add", "update"):
        flags = {o for a in jobs_sub.choices[command]._actions for o in a.option_strings}
        wanted = [f for f in _fields(JobSpec) if f not in ("name", "retry")]
        wanted += [f"retry.{f}" for f in _fields(RetryPolicy)]
        for field in wanted:
            flag = FLAGS[field]
            assert all(part in flags for part in flag.split("/")), (command, field, flag)


ALL_FLAGS = [
    "--executor", "shell", "--target", "echo hi", "--payload", '{"a": 1}',
    "--description", "the nightly one", "--every", "90s", "--misfire", "run_all",
    "--catch-up-window", "2h", "--priority", "high", "--timeout", "10m",
    "--idle-timeout", "1m", "--expires-in", "1d", "--overlap", "queue", "--max-queued", "7",
    "--pool", "io", "--guarantee", "at-least-once", "--capabilities", "gpu,linux",
    "--options", '{"cwd": "/tmp"}', "--retry-max-attempts", "5", "--retry-base", "10s",
    "--retry-factor", "3", "--retry-max-delay", "20m", "--retry-jitter", "0.25",
    "--delivery", "announce", "--delivery-to", "@ops", "--disabled",
]  # fmt: skip


def test_jobs_add_and_update_set_every_field(sh: Sh) -> None:
    sh.ok("jobs", "add", "full", *ALL_FLAGS)
    spec = sh.spec("full")
    assert spec == {
        **spec,
        "executor": "shell",
        "target": "echo hi",
        "payload": {"a": 1},
        "description": "the nightly one",
        "every": 90.0,
        "misfire": "run_all",
        "catch_up_window": 7200.0,
        "priority": "high",
        "timeout": 600.0,
        "idle_timeout": 60.0,
        "expires_in": 86400.0,
        "overlap": "queue",
        "max_queued": 7,
        "pool": "io",
        "delivery_guarantee": "at-least-once",
        "capabilities": ["gpu", "linux"],
        "options": {"cwd": "/tmp", "delivery": "announce", "delivery_to": "@ops"},
        "retry": {"max_attempts": 5, "base": 10.0, "factor": 3.0, "max_delay": 1200.0,
                  "jitter": 0.25},
        "enabled": False,
    }  # fmt: skip
    sh.ok(
        "jobs", "update", "full", "--idle-timeout", "none", "--expires-in", "none",
        "--pool", "none", "--every", "none", "--at", "in 1h", "--delete-after-run",
        "--enabled", "--max-queued", "3", "--retry-jitter", "0",
    )  # fmt: skip
    spec = sh.spec("full")
    assert spec["idle_timeout"] is None and spec["expires_in"] is None and spec["pool"] is None
    assert spec["every"] is None and spec["at"] and spec["delete_after_run"] is True
    assert spec["enabled"] is True and spec["max_queued"] == 3 and spec["retry"]["jitter"] == 0
    assert spec["retry"]["factor"] == 3.0  # untouched fields stay
    sh.ok("jobs", "update", "full", "--no-delete-after-run")
    assert sh.spec("full")["delete_after_run"] is False


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--retry-factor", "0.5"], "--retry-factor"),
        (["--retry-jitter", "2"], "--retry-jitter"),
        (["--max-queued", "-1"], "--max-queued"),
        (["--catch-up-window", "400d"], "--catch-up-window"),
        (["--misfire", "sometimes"], "--misfire"),
        (["--delivery", "announce"], "--delivery-to"),
        (["--retry-base", "2h", "--retry-max-delay", "1h"], "--retry-max-delay"),
        (["--options", '{"colour": 1}'], "--options: colour"),
    ],
)
def test_a_bad_field_flag_is_named_and_stores_nothing(sh: Sh, flags: list[str], named: str) -> None:
    sh.ok("jobs", "add", "keep", "--executor", "shell", "--target", "true")
    before = sh.spec("keep")
    for command in (["jobs", "add", "new"], ["jobs", "update", "keep"]):
        argv = [*command, *(["--executor", "shell", "--target", "x"] if "add" in command else [])]
        proc = sh(*argv, *flags)
        assert proc.returncode == 2 and named in proc.stderr, (command, proc.stderr)
    assert sh.jobs() == 1 and sh.spec("keep") == before


JOBS_TOML = """
[[jobs]]
name = "nightly"
executor = "shell"
target = "backup.sh --full"
cron = "0 3 * * *"
tz = "Europe/Berlin"
description = "full backup"
timeout = "1h"
idle_timeout = "5m"
misfire = "run_once"
overlap = "skip"
capabilities = ["disk"]
options = { cwd = "/srv", delivery = "announce", delivery_to = "@ops" }
retry = { max_attempts = 5, base = "1m", factor = 1.5, max_delay = "2h", jitter = 0.1 }

[[jobs]]
name = "digest"
target = "digest"
every = 90.5
payload = { to = ["a@example.com"], n = 3 }
expires_in = "1d"
max_queued = 3
priority = "low"
delivery_guarantee = "at-least-once"
pool = "mail"

[[jobs]]
name = "later"
executor = "shell"
target = "true"
at = "2099-01-01T00:00:00+00:00"
delete_after_run = true
enabled = false
catch_up_window = 0
"""


def test_export_then_import_is_a_round_trip(sh: Sh) -> None:
    (sh.tmp / "jobs.toml").write_text(JOBS_TOML)
    sh.ok("jobs", "add", "--file", "jobs.toml")
    sh.ok("jobs", "add", "flags", *ALL_FLAGS)
    names = ["digest", "flags", "later", "nightly"]
    specs = {n: sh.spec(n) for n in names}
    for fmt in ("toml", "json"):
        first = sh.ok("jobs", "export", "--format", fmt)
        assert sh.ok("jobs", "export", "-o", f"all.{fmt}").startswith("wrote 4 job(s)")
        assert (sh.tmp / f"all.{fmt}").read_text() == first
        for n in names:
            sh.ok("jobs", "rm", n)
        assert sh.jobs() == 0
        sh.ok("jobs", "add", "--file", f"all.{fmt}")
        assert sh.ok("jobs", "export", "--format", fmt) == first
        assert {n: sh.spec(n) for n in names} == specs  # field by field
    text = sh.ok("jobs", "export", "nightly")
    assert 'timeout = "1h"' in text and 'idle_timeout = "5m"' in text and "every" not in text
    assert json.loads(sh.ok("jobs", "export", "digest", "--json"))["jobs"][0]["every"] == 90.5


def test_export_errors(sh: Sh) -> None:
    sh.ok("jobs", "add", "n", "--executor", "shell", "--target", "true",
          "--payload", '{"x": null}')  # fmt: skip
    proc = sh("jobs", "export", "n", "nope")
    assert proc.returncode == 1 and "no job named 'nope'" in proc.stderr and not proc.stdout
    proc = sh("jobs", "export", "--format", "toml")
    assert proc.returncode == 2 and "job 'n'" in proc.stderr and "--format json" in proc.stderr
    assert json.loads(sh.ok("jobs", "export", "--format", "json"))["jobs"][0]["payload"] == {
        "x": None
    }


def _with_pty_stderr(sh: Sh, *argv: str) -> tuple[int, str, str]:
    """Run with stderr on a terminal: (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    try:
        proc = sh(*argv, stderr=slave)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.returncode, proc.stdout, b"".join(chunks).decode(errors="replace")


def test_jobs_add_file_with_many_jobs_shows_progress_only_on_a_terminal(sh: Sh) -> None:
    many = [{"name": f"job-{i:04d}", "executor": "shell", "target": "true", "every": "1h"}
            for i in range(300)]  # fmt: skip
    (sh.tmp / "many.json").write_text(json.dumps({"jobs": many}))
    code, out, tty = _with_pty_stderr(sh, "jobs", "add", "--file", "many.json")
    assert code == 0 and out.count("saved job") == 300
    assert "adding jobs from many.json [" in tty and "600/600 100%" in tty
    proc = sh("jobs", "add", "--file", "many.json")  # stderr a pipe: no bar
    assert proc.returncode == 0 and "\r" not in proc.stderr and "%" not in proc.stderr
    assert sh.jobs() == 300
