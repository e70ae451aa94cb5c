"""End to end: a chain survives SIGKILL of the real daemon between the parent's finish
and the child's start.

The child waits ``trigger_delay`` (2 s) after its parent; the daemon is killed inside
that window. The parent's end and the child's dispatch are one transaction, so the
store never shows one without the other; after a restart the child runs exactly
once (side-effect files count real executions) and the parent does not run again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, eventually, make_env

pytestmark = pytest.mark.e2e

__all__ = ["make_env"]  # the fixture, imported for pytest


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_sigkill_between_parent_finish_and_child_start(make_env: Callable[..., Env]) -> None:
    env = make_env()
    parent_log, child_log = env.tmp / "parent.log", env.tmp / "child.log"
    env.cli("jobs", "add", "parent", "--executor", "shell", "--target",
            f"echo ran >> {parent_log}")  # fmt: skip
    env.cli(
        "jobs", "add", "child", "--executor", "shell", "--target", f"echo ran >> {child_log}",
        "--parent", "parent", "--trigger-on", "success", "--trigger-delay", "2s",
    )  # fmt: skip
    daemon = env.start()
    d = int(env.cli_json("enqueue", "parent")["id"])

    def parent_state() -> tuple[str, int] | None:
        [(status, children)] = env.query(
            "SELECT d.status, (SELECT COUNT(*) FROM dispatches c WHERE c.kind = 'chain')"
            " FROM dispatches d WHERE d.id = ?",
            d,
        )
        return (status, children) if status == "done" else None

    # one read: the finished parent and its child's dispatch are always seen together
    assert eventually(parent_state, what="the parent to finish") == ("done", 1)
    daemon.kill()
    daemon.wait(timeout=10)
    assert _lines(child_log) == []  # killed inside the trigger_delay window
    [(child_id, status)] = env.query("SELECT id, status FROM dispatches WHERE kind = 'chain'")
    assert status == "queued"

    env.start()
    eventually(lambda: env.status(child_id) == "done", timeout=15, what="the child to run")
    assert _lines(child_log) == ["ran"]
    assert _lines(parent_log) == ["ran"]
    assert env.query("SELECT COUNT(*) FROM dispatches WHERE kind = 'chain'") == [(1,)]
    assert env.query("SELECT COUNT(*) FROM runs WHERE job_name = 'child'") == [(1,)]
