"""Approval gates and crashes, through the real daemon and the real CLI (SIGKILL).

- approved while the daemon is dead (approved, not yet dispatched): runs exactly once
  after the restart (a side-effect file counts real executions);
- rejected while the daemon is dead: never runs;
- an approved at-least-once run killed mid-flight is replayed after the restart
  without a second approval.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, eventually
from tests.e2e.test_daemon_kill import make_env as make_env  # the fixture

pytestmark = pytest.mark.e2e


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _gated(env: Env, name: str, command: str, *extra: str) -> None:
    env.cli(
        "jobs", "add", name, "--executor", "shell", "--target", command, "--timeout", "60s",
        "--delivery", "none", "--delivery-channel", "approvals", "--approval", *extra,
    )  # fmt: skip


def _kill(env: Env, proc: object) -> None:
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    env.wait_exit(proc)  # type: ignore[arg-type]


def test_approved_or_rejected_while_down(make_env: Callable[..., Env]) -> None:
    env = make_env()
    ran = env.tmp / "ran.txt"
    _gated(env, "deploy", f"echo run >> {ran}")
    proc = env.start()
    approve = env.cli_json("enqueue", "deploy")["id"]
    reject = env.cli_json("enqueue", "deploy")["id"]
    assert env.status(approve) == env.status(reject) == "awaiting_approval"
    _kill(env, proc)
    pending = {a["dispatch_id"]: a["id"] for a in env.cli_json("approvals", "list")}
    env.cli("approvals", "approve", str(pending[approve]), "--by", "alice")
    env.cli("approvals", "reject", str(pending[reject]), "--reason", "no", "--by", "bob")
    assert env.status(approve) == "queued"
    proc = env.start()
    eventually(lambda: env.status(approve) == "done", what="the approved dispatch to run")
    assert _lines(ran) == 1
    assert env.status(reject) == "cancelled"
    env.cli("jobs", "run", "deploy")  # a marker run-now (not gated): after it, nothing more
    eventually(lambda: _lines(ran) == 2, what="the marker run")
    proc.send_signal(signal.SIGTERM)
    assert env.wait_exit(proc) == 0
    assert _lines(ran) == 2
    assert env.query("SELECT COUNT(*) FROM runs WHERE dispatch_id = ?", reject) == [(0,)]


def test_a_replay_of_an_approved_run_is_not_gated_again(make_env: Callable[..., Env]) -> None:
    env = make_env()
    ran = env.tmp / "ran.txt"
    # the first execution hangs (killed with the daemon), the replay ends at once
    cmd = f"echo run >> {ran}; [ $(wc -l < {ran}) -ge 2 ] || sleep 30"
    _gated(env, "replayed", cmd, "--guarantee", "at-least-once")
    proc = env.start()
    dispatch_id = env.cli_json("enqueue", "replayed")["id"]
    [a] = env.cli_json("approvals", "list")
    env.cli("approvals", "approve", str(a["id"]))
    eventually(lambda: _lines(ran) == 1, what="the approved run to start")
    _kill(env, proc)
    proc = env.start()
    eventually(lambda: env.status(dispatch_id) == "done", timeout=15, what="the replay")
    assert _lines(ran) == 2
    assert len(env.cli_json("approvals", "list")) == 1
    proc.send_signal(signal.SIGTERM)
    assert env.wait_exit(proc) == 0
