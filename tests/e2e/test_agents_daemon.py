"""Capability-based assignment through the real daemon and the CLI, as subprocesses:
three registered agents of different capabilities (one from the config, two added by
the CLI while the daemon runs), and an agent taken offline mid-run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make() -> Env:
        made.append(Env(tmp_path))
        return made[-1]

    yield make
    for e in made:
        for proc in e.daemons:  # only the daemons this test started
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _fail(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(env._argv(*args), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, f"{args} succeeded"
    return proc


def _with_agents(env: Env) -> None:
    env.config.write_text(
        env.config.read_text()
        + '\n[agents]\noffline_after = "1h"\n'
        + '[[agents.agent]]\nid = "coder"\ncapabilities = ["python", "git"]\n'
    )


def test_three_agents_route_by_capability(make_env: Callable[..., Env]) -> None:
    env = make_env()
    _with_agents(env)
    for name, caps in (("py", "python"), ("img", "images"), ("sh", "shell")):
        env.cli("jobs", "add", name, "--executor", "shell", "--target", "true",
                "--capabilities", caps)  # fmt: skip
    env.start()
    env.cli("agents", "add", "artist", "--capabilities", "Images")
    env.cli("agents", "add", "ops", "--capabilities", "shell,git", "--max-concurrent", "1")
    ids = {job: int(env.cli("enqueue", job).stdout) for job in ("py", "img", "sh")}
    both = int(env.cli("enqueue", "sh", "--capabilities", "git").stdout)
    nobody = int(env.cli("enqueue", "sh", "--capabilities", "gpu").stdout)
    ids["both"] = both
    eventually(lambda: all(env.status(d) == "done" for d in ids.values()), what="routed runs")
    agents = {
        d: env.query("SELECT agent FROM runs WHERE dispatch_id = ?", d)[0][0] for d in ids.values()
    }
    assert agents == {ids["py"]: "coder", ids["img"]: "artist", ids["sh"]: "ops", both: "ops"}
    eventually(
        lambda: (
            env.query("SELECT wait_reason FROM dispatches WHERE id = ?", nobody)[0][0]
            == "unmatched: needs [gpu, shell]"
        ),
        what="the unmatched reason",
    )
    listed = {a["id"]: a for a in env.cli_json("agents", "list")}
    assert listed["coder"]["source"] == "config" and listed["artist"]["capabilities"] == ["images"]
    # an agent that can take it appears: assigned at once, no polling
    env.cli("agents", "add", "gpu-box", "--capabilities", "gpu,shell")
    eventually(lambda: env.status(nobody) == "done", what="the unmatched dispatch to run")
    # bad input: exit 2 naming the flag, nothing stored
    proc = _fail(env, "agents", "add", "x", "--capabilities", "ok,bad name")
    assert proc.returncode == 2 and "--capabilities" in proc.stderr
    proc = _fail(env, "agents", "drain", "ghost")
    assert proc.returncode == 1
    assert len(env.cli_json("agents", "list")) == 4


def test_agent_offline_mid_run_is_reassigned(make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    _with_agents(env)
    marker = tmp_path / "first-attempt"
    # the first attempt marks itself and hangs; a second one finishes at once
    command = f"test -f {marker} && exit 0; touch {marker}; sleep 60"
    env.cli("jobs", "add", "long", "--executor", "shell", "--target", command,
            "--capabilities", "python", "--delivery-guarantee", "at-least-once")  # fmt: skip
    env.start()
    dispatch_id = int(env.cli("enqueue", "long").stdout)
    eventually(marker.exists, what="the first attempt on coder")
    env.cli("agents", "add", "backup", "--capabilities", "python")
    env.cli("agents", "drain", "backup")  # not yet: coder is the only one taking work
    env.cli("agents", "update", "coder", "--status", "offline")
    eventually(lambda: env.status(dispatch_id) == "queued", what="the run cancelled, requeued")
    env.cli("agents", "undrain", "backup")
    eventually(lambda: env.status(dispatch_id) == "done", what="the run on the other agent")
    sql = "SELECT agent, status FROM runs WHERE dispatch_id = ? ORDER BY id"
    runs = env.query(sql, dispatch_id)
    assert runs == [("coder", "cancelled"), ("backup", "ok")]
