"""End to end: SIGTERM past ``shutdown_grace`` applies each job's delivery guarantee.

The daemon (``python -m shepherd run``) runs a shell job that sleeps far longer than the
grace (0.5 s) on its first execution and finishes at once on any later one (a flag
file tells them apart). Every execution appends ``<dispatch id> <attempt> <key>`` to a
side-effect log.

- at-least-once: the run ends ``cancelled`` (reason ``shutdown``), its process group is
  killed, the dispatch is requeued, and the next start runs it again to ``done``;
- at-most-once: the run and the dispatch end ``cancelled``; the next start never runs
  it again.

Each test runs on SQLite and on PostgreSQL (``db_path``; there the daemon is the stable
node ``[cluster] node``, see ``Env``); the checks read through ``Store``.

No fixed sleeps: everything polls with a deadline.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, _processes_with, all_runs, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.engines("sqlite", "postgresql")]

GRACE = 0.5


@pytest.fixture
def env(tmp_path: Path, engine: str, db_path: str) -> Iterator[Env]:
    database = db_path if engine == "postgresql" else None
    e = Env(tmp_path, concurrency=2, grace=f"{int(GRACE * 1000)}ms", database=database)
    yield e
    for proc in e.daemons:  # only the daemons this test started
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    e.close()


def _start_long_job(env: Env, guarantee: str, *extra: str) -> tuple[int, str, Path]:
    """Add the job, start the daemon, enqueue; return (dispatch id, marker, log) once the
    long first execution is under way."""
    marker = f"30.{uuid.uuid4().int % 10**8:08d}"  # `sleep 30.xxxxxxxx`: a unique argv
    flag, log = env.tmp / "ran-once", env.tmp / "effects.log"
    command = (
        f'echo "$SHEPHERD_DISPATCH_ID $SHEPHERD_ATTEMPT $SHEPHERD_IDEMPOTENCY_KEY" >> "{log}"; '
        f'if [ ! -e "{flag}" ]; then touch "{flag}"; sleep {marker}; fi'
    )
    env.cli(
        "jobs",
        "add",
        "long",
        "--executor",
        "shell",
        "--target",
        command,
        "--guarantee",
        guarantee,
        "--timeout",
        "5m",
        *extra,
    )
    env.start()
    dispatch_id = env.cli_json("enqueue", "long")["id"]
    eventually(lambda: _processes_with(marker), what="the long run to start")
    assert env.status(dispatch_id) == "running"
    return dispatch_id, marker, log


def _sigterm_and_wait(env: Env, marker: str) -> float:
    daemon = env.daemons[-1]
    began = time.monotonic()
    os.kill(daemon.pid, signal.SIGTERM)
    assert env.wait_exit(daemon, timeout=20) == 0, env.logs()
    took = time.monotonic() - began
    eventually(lambda: not _processes_with(marker), timeout=5, what="the sleep to be killed")
    return took


def _runs(env: Env, dispatch_id: int) -> list[tuple[str, str | None, int]]:
    """(status, reason, attempt) of each run of ``dispatch_id``, oldest first."""
    runs = env.read(lambda s: all_runs(s, dispatch_id=dispatch_id))
    return [(r.status, r.reason, r.attempt) for r in reversed(runs)]


def _executions(log: Path) -> list[list[str]]:
    return [line.split(" ") for line in log.read_text().splitlines()]


@pytest.mark.parametrize("max_attempts", ["3", "1"])
def test_sigterm_cancels_at_least_once_and_the_next_start_runs_it_again(
    env: Env, max_attempts: str
) -> None:
    dispatch_id, marker, log = _start_long_job(env, "at-least-once", "--max-attempts", max_attempts)

    took = _sigterm_and_wait(env, marker)
    assert took >= GRACE, f"stopped after {took:.2f}s, before the grace"
    [(status, reason, _)] = _runs(env, dispatch_id)
    assert (status, reason) == ("cancelled", "shutdown"), env.logs()
    assert env.status(dispatch_id) == "queued"  # requeued for the next start
    assert env.running() == []

    restarted = env.start("--exit-when-idle", "--for", "30s")
    assert env.wait_exit(restarted, timeout=30) == 0, env.logs()
    assert env.status(dispatch_id) == "done", env.logs()
    runs = _runs(env, dispatch_id)
    assert [s for s, _, _ in runs] == ["cancelled", "ok"], runs
    executions = _executions(log)
    assert [int(e[0]) for e in executions] == [dispatch_id, dispatch_id]
    assert [int(e[1]) for e in executions] == [a for _, _, a in runs]


def test_sigterm_cancels_at_most_once_and_it_never_runs_again(env: Env) -> None:
    dispatch_id, marker, log = _start_long_job(env, "at-most-once")

    took = _sigterm_and_wait(env, marker)
    assert took >= GRACE, f"stopped after {took:.2f}s, before the grace"
    assert _runs(env, dispatch_id) == [("cancelled", "shutdown", 1)], env.logs()
    assert env.status(dispatch_id) == "cancelled"

    restarted = env.start("--exit-when-idle", "--for", "30s")
    assert env.wait_exit(restarted, timeout=30) == 0, env.logs()
    assert env.status(dispatch_id) == "cancelled"
    assert _runs(env, dispatch_id) == [("cancelled", "shutdown", 1)]
    assert len(_executions(log)) == 1
