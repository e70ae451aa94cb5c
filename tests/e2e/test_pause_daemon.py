"""End to end: pause, resume, drain and disable against the real daemon (a subprocess),
driven by the real CLI (subprocesses too).

- a paused job's dispatches stay queued through a SIGKILL and a restart, and run right
  after ``resume`` (side-effect lines count the real executions);
- ``drain`` waits for the running runs, then the daemon stays paused until ``resume``;
  with a ``--timeout`` too short it exits 1 naming what still runs;
- ``jobs disable`` settles a paused job's queued dispatches ``skipped``; ``jobs run``
  of a disabled job is held by the pause and runs on resume.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_daemon_kill import Env, eventually, make_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


def _env(make_env: Callable[..., Env]) -> Env:  # noqa: F811
    env = make_env()
    with env.config.open("a") as f:
        f.write('health_interval = "0.1s"\n')
    return env


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _waiting(env: Env, key: str, pid: int | None = None) -> Any:
    """Dispatches the daemon holds behind the pause ``key``, from its latest health
    snapshot (what ``status`` shows; read directly to spare a CLI process per poll)."""
    rows = env.query(
        "SELECT status FROM instances WHERE stopped_at IS NULL AND pid = COALESCE(?, pid)"
        " ORDER BY updated_at DESC LIMIT 1",
        pid,
    )
    if not rows or not rows[0][0]:
        return None
    pauses = json.loads(rows[0][0]).get("dispatcher", {}).get("pauses", {})
    return (pauses.get(key) or {}).get("waiting")


def _shell(env: Env, name: str, command: str, *flags: str) -> None:
    env.cli("jobs", "add", name, "--executor", "shell", "--target", command, *flags)


def test_a_pause_survives_sigkill_and_resume_runs_the_work_at_once(
    make_env: Callable[..., Env],  # noqa: F811
) -> None:
    env = _env(make_env)
    side = env.tmp / "held.txt"
    _shell(env, "held", f"echo run >> {side}")
    _shell(env, "marker", "true")
    daemon = env.start()
    env.cli("pause", "job", "held", "--reason", "upgrade")
    held = [env.cli_json("enqueue", "held")["id"] for _ in range(3)]
    marker = env.cli_json("enqueue", "marker")["id"]  # the daemon reads these in order
    eventually(lambda: env.status(marker) == "done", what="the unpaused job to run")
    eventually(lambda: _waiting(env, "job:held") == 3, what="three held behind the pause")

    daemon.send_signal(signal.SIGKILL)
    env.wait_exit(daemon)
    again = env.start()
    marker = env.cli_json("enqueue", "marker")["id"]
    eventually(lambda: env.status(marker) == "done", what="the restarted daemon to run")
    eventually(lambda: _waiting(env, "job:held", again.pid) == 3, what="held after the restart")
    assert [env.status(i) for i in held] == ["queued"] * 3 and _lines(side) == 0
    assert env.query("SELECT attempt FROM dispatches WHERE job_name = 'held'") == [(0,)] * 3

    began = time.monotonic()
    assert env.cli_json("resume", "job", "held") == {"resumed": ["job:held"]}
    eventually(lambda: all(env.status(i) == "done" for i in held), what="the held work")
    print(f"resume → 3 held dispatches done in {time.monotonic() - began:.3f}s")
    assert _lines(side) == 3


def test_drain_through_the_cli_waits_for_running_runs_and_stays_paused(
    make_env: Callable[..., Env],  # noqa: F811
) -> None:
    env = _env(make_env)
    side, gate = env.tmp / "slow.txt", env.tmp / "gate"
    _shell(env, "slow", f"while [ ! -f {gate} ]; do sleep 0.02; done; echo done >> {side}")
    env.start()
    first = [env.cli_json("enqueue", "slow")["id"] for _ in range(2)]
    eventually(
        lambda: env.query("SELECT COUNT(*) FROM runs WHERE status = 'running'") == [(2,)],
        what="both runs to start",
    )
    drain = subprocess.Popen(
        env._argv("drain", "--timeout", "20s", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=env.tmp,
    )
    eventually(lambda: env.query("SELECT scope FROM pauses") == [("runtime",)], what="pause")
    assert drain.poll() is None  # still waiting: both runs go on
    gate.touch()
    out, err = drain.communicate(timeout=30)
    assert drain.returncode == 0, err
    data = json.loads(out)
    assert (data["drained"], data["waited_for"], data["running"]) == (True, 2, 0)
    assert data["serving"] is True and _lines(side) == 2
    assert [env.status(i) for i in first] == ["done", "done"]

    later = env.cli_json("enqueue", "slow")["id"]
    eventually(lambda: _waiting(env, "runtime") == 1, what="the daemon to hold new work")
    assert env.status(later) == "queued"
    assert env.cli_json("resume", "--all") == {"resumed": ["runtime"]}
    eventually(lambda: env.status(later) == "done", what="the held dispatch after resume")


def test_drain_with_a_short_timeout_exits_1_naming_what_runs(
    make_env: Callable[..., Env],  # noqa: F811
) -> None:
    env = _env(make_env)
    _shell(env, "stuck", "sleep 30", "--timeout", "1m")
    env.start()
    stuck = env.cli_json("enqueue", "stuck")["id"]
    eventually(lambda: env.status(stuck) == "running", what="the run to start")
    proc = subprocess.run(
        env._argv("drain", "--timeout", "0.3s", "--json"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=env.tmp,
    )
    assert proc.returncode == 1 and "1 run(s) still running" in proc.stderr
    data = json.loads(proc.stdout)
    assert (data["drained"], data["running"]) == (False, 1)
    env.cli("cancel", str(stuck))  # its process group goes with it
    eventually(lambda: env.status(stuck) == "cancelled", what="the cancel")


def test_disable_drops_a_paused_jobs_queue_and_pause_holds_a_run_now(
    make_env: Callable[..., Env],  # noqa: F811
) -> None:
    env = _env(make_env)
    side = env.tmp / "d.txt"
    _shell(env, "d", f"echo run >> {side}")
    env.start()
    env.cli("pause", "job", "d")
    queued = [env.cli_json("enqueue", "d")["id"] for _ in range(2)]
    eventually(lambda: _waiting(env, "job:d") == 2, what="two held")
    env.cli("jobs", "disable", "d")
    eventually(lambda: all(env.status(i) == "done" for i in queued), what="the skips")
    rows = env.query("SELECT outcome, dead_reason FROM dispatches ORDER BY id")
    assert [r[0] for r in rows] == ["skipped", "skipped"]
    reasons = env.query("SELECT reason FROM runs WHERE status = 'skipped'")
    assert reasons == [("disabled",), ("disabled",)]
    run_now = env.cli_json("jobs", "run", "d")["dispatch_id"]
    eventually(lambda: _waiting(env, "job:d") == 1, what="the run-now held by the pause")
    assert env.status(run_now) == "queued" and _lines(side) == 0
    env.cli("resume", "job", "d")
    eventually(lambda: env.status(run_now) == "done", what="the run-now after resume")
    assert _lines(side) == 1
