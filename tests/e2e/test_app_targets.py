"""End to end: python targets in the standalone daemon, imported with ``--app``.

- ``shepherd --app myapp.tasks:targets run`` (the installed console script, so the
  application's package imports from the current directory only because the CLI puts
  it on ``sys.path``) runs a python job enqueued by the CLI; the target gets its typed
  payload; ``app = "..."`` in the config does the same;
- with ``--app`` the CLI's ``enqueue`` refuses a payload that does not fit, naming the
  field, and stores nothing;
- each way an ``--app`` can fail names the module and the attribute and exits 2,
  with nothing written.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SHEPHERD = str(Path(sys.executable).with_name("shepherd"))

TASKS = """
import msgspec
from shepherd import Targets

targets = Targets()


class Report(msgspec.Struct):
    to: str
    copies: int = 1


@targets.task("report", payload=Report)
async def report(ctx):
    assert isinstance(ctx.payload, Report)
    return {"to": ctx.payload.to, "copies": ctx.payload.copies}


@targets.task
async def untyped(ctx):
    return {"got": ctx.payload, "kind": type(ctx.payload).__name__}


def make():
    made = Targets()
    made.register("report", report, payload=Report)
    return made


not_a_registry = 42


def sync_one(ctx):
    return 1


def broken_factory():
    return {"x": sync_one}
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    pkg = tmp_path / "myapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks.py").write_text(textwrap.dedent(TASKS))
    (pkg / "boom.py").write_text("raise RuntimeError('the app is broken')\n")
    (tmp_path / "shepherd.toml").write_text('database = "app.db"\nlog_level = "INFO"\n')
    return tmp_path


def sh(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHEPHERD, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def ok(cwd: Path, *args: str) -> str:
    proc = sh(cwd, *args)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def rows(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_the_daemon_runs_a_python_job_from_app(app_dir: Path) -> None:
    app = ("--app", "myapp.tasks:targets")
    ok(app_dir, *app, "jobs", "add", "report", "--executor", "python", "--target", "report")
    ok(app_dir, "jobs", "add", "untyped", "--executor", "python", "--target", "untyped")
    typed = int(ok(app_dir, *app, "enqueue", "report", "--payload", '{"to": "ops"}'))
    plain = int(ok(app_dir, "enqueue", "untyped", "--payload", '{"x": 1}'))

    daemon = sh(app_dir, *app, "run", "--exit-when-idle", "--for", "30s")
    assert daemon.returncode == 0, daemon.stderr

    runs = {r["dispatch_id"]: r for r in json.loads(ok(app_dir, "runs", "list", "--json"))}
    assert runs[typed]["status"] == "ok"
    assert runs[typed]["result"] == {"to": "ops", "copies": 1}  # the Struct's default
    assert runs[plain]["status"] == "ok"
    assert runs[plain]["result"] == {"got": {"x": 1}, "kind": "dict"}


def test_app_in_the_config_and_a_factory(app_dir: Path) -> None:
    (app_dir / "shepherd.toml").write_text('database = "app.db"\napp = "myapp.tasks:make"\n')
    ok(app_dir, "jobs", "add", "report", "--executor", "python", "--target", "report")
    dispatch = int(ok(app_dir, "enqueue", "report", "--payload", '{"to": "x", "copies": 2}'))
    assert sh(app_dir, "run", "--exit-when-idle", "--for", "30s").returncode == 0
    [run] = json.loads(ok(app_dir, "runs", "list", "--json"))
    assert run["dispatch_id"] == dispatch and run["result"] == {"to": "x", "copies": 2}


def test_enqueue_with_app_refuses_a_payload_that_does_not_fit(app_dir: Path) -> None:
    db = app_dir / "app.db"
    app = ("--app", "myapp.tasks:targets")
    ok(app_dir, *app, "jobs", "add", "report", "--executor", "python", "--target", "report")
    for payload, message in (
        ('{"to": 5}', "payload.to: Expected str, got int"),
        ("{}", "payload.to: required field missing"),
        ('{"to": "a", "copies": "2"}', "payload.copies: Expected int, got str"),
    ):
        proc = sh(app_dir, *app, "enqueue", "report", "--payload", payload)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr
    assert rows(db, "dispatches") == 0
    # a job whose default payload does not fit is refused at add
    proc = sh(app_dir, *app, "jobs", "add", "r2", "--target", "report", "--payload", '{"to": 1}')
    assert proc.returncode == 2 and "payload: to: Expected str, got int" in proc.stderr
    # a target the app does not have
    proc = sh(app_dir, *app, "jobs", "add", "r3", "--target", "nope")
    assert proc.returncode == 2 and "no python target 'nope' in app" in proc.stderr
    assert rows(db, "jobs") == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch.tasks:targets", "app: no module named 'nosuch'"),
        ("myapp.nosuch:targets", "app: no module named 'myapp.nosuch'"),
        ("myapp.tasks:missing", "app: module 'myapp.tasks' has no attribute 'missing'"),
        ("myapp", "app: module 'myapp' has no attribute 'targets'"),  # the default name
        ("myapp.tasks:not_a_registry", "app: 'myapp.tasks:not_a_registry' is int 42"),
        ("myapp.tasks:report", "app: 'myapp.tasks:report' is an async function"),
        ("myapp.tasks:broken_factory", "'myapp.tasks:broken_factory': target 'x' is not"),
        ("myapp.boom:targets", "importing module 'myapp.boom' failed: RuntimeError"),
        ("myapp.tasks:a:b", "app: expected 'package.module:attribute'"),
    ],
)
def test_a_bad_app_names_module_and_attribute_and_exits_2(
    app_dir: Path, spec: str, message: str
) -> None:
    proc = sh(app_dir, "--app", spec, "run", "--exit-when-idle")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not (app_dir / "app.db").exists()  # refused before the database was opened
