"""End to end, the real daemon and CLI as subprocesses:

- a producer's idempotency key stays bound to its dispatch after the dispatch died
  with its runtime (SIGKILL, at-most-once: dead, ``crashed``): enqueueing the key again
  returns that dispatch (``duplicate: true``) and nothing runs; ``dlq retry`` runs it;
- keys that cannot be a producer's are refused with exit 2, naming the flag;
- disabling an ``overlap = "queue"`` job while a run is in progress resolves every
  waiting fire at once (skipped, ``disabled``), so ``--exit-when-idle`` exits when the
  run ends.

No fixed sleeps: the shell bodies wait for a file the test creates, and everything
polls with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_daemon_kill import Env, _processes_with, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made = Env(tmp_path)
    yield made
    for proc in made.daemons:  # only the daemons this test started
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _waiting_body(env: Env, marker: str, log: str) -> str:
    """A shell body that logs ``start``, waits for the file ``go``, then logs ``end``;
    ``marker`` makes its command line findable."""
    go, out = env.tmp / "go", env.tmp / log
    return (
        f": {marker}; echo start >> '{out}';"
        f" while [ ! -e '{go}' ]; do sleep 0.02; done; echo end >> '{out}'"
    )


def _lines(env: Env, log: str) -> list[str]:
    path = env.tmp / log
    return path.read_text().split() if path.exists() else []


def test_a_key_returns_its_dead_dispatch_after_a_sigkill(env: Env) -> None:
    marker = f"key-{uuid.uuid4().hex}"
    body = _waiting_body(env, marker, "effects.log")
    env.cli("jobs", "add", "once", "--executor", "shell", "--target", body, "--timeout", "60s")
    daemon = env.start()
    first = env.cli_json("enqueue", "once", "--idempotency-key", "K")
    assert first["duplicate"] is False
    d = first["id"]
    eventually(lambda: _lines(env, "effects.log") == ["start"], what="the run to start")

    os.kill(daemon.pid, signal.SIGKILL)
    assert env.wait_exit(daemon) == -signal.SIGKILL
    for pid in _processes_with(marker):  # the killed runtime's body, if it outlived it
        os.kill(pid, signal.SIGKILL)
    eventually(lambda: not _processes_with(marker), what="the old body to be gone")
    daemon = env.start()
    eventually(lambda: env.status(d) == "dead", what="recovery to dead-letter it")
    assert env.query("SELECT dead_reason FROM dispatches WHERE id = ?", d) == [("crashed",)]

    again = env.cli_json("enqueue", "once", "--idempotency-key", "K")
    assert again == {"id": d, "job": "once", "duplicate": True}
    assert env.query("SELECT COUNT(*) FROM dispatches")[0][0] == 1
    assert env.status(d) == "dead"
    text = env.cli("enqueue", "once", "--idempotency-key", "K").stdout
    assert text.startswith(f"{d} ") and "existing dispatch" in text

    (env.tmp / "go").touch()
    assert env.cli_json("dlq", "retry", str(d))["retried"] == [d]  # the one way to rerun it
    eventually(lambda: env.status(d) == "done", what="the retried dispatch to finish")
    # the original start, then the retry's start and end: the enqueues ran nothing
    assert _lines(env, "effects.log") == ["start", "start", "end"]
    runs = env.query("SELECT status FROM runs WHERE dispatch_id = ? ORDER BY id", d)
    assert runs == [("crashed",), ("ok",)]
    assert env.cli_json("enqueue", "once", "--idempotency-key", "K")["duplicate"] is True

    os.kill(daemon.pid, signal.SIGTERM)
    assert env.wait_exit(daemon) == 0, env.logs()


@pytest.mark.parametrize(
    "key", ["", "   ", "K:replay1", "x" * 256], ids=["empty", "blank", "replay", "long"]
)
def test_bad_keys_exit_2_naming_the_flag(env: Env, key: str) -> None:
    env.cli("jobs", "add", "a", "--executor", "shell", "--target", "true")
    proc = subprocess.run(
        env._argv("enqueue", "a", "--idempotency-key", key),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env.tmp,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--idempotency-key" in proc.stderr
    assert env.query("SELECT COUNT(*) FROM dispatches")[0][0] == 0


def test_disabling_a_queue_job_resolves_its_waiting_fires(env: Env) -> None:
    marker = f"waiters-{uuid.uuid4().hex}"
    body = _waiting_body(env, marker, "runs.log")
    env.cli(
        "jobs", "add", "q", "--executor", "shell", "--target", body,
        "--every", "1s", "--overlap", "queue", "--timeout", "60s",
    )  # fmt: skip
    running = env.cli_json("enqueue", "q")["id"]  # keeps the job busy from the start
    daemon = env.start("--exit-when-idle", "--for", "60s")
    eventually(lambda: env.status(running) == "running", what="the first run")

    def waiting() -> int:
        sql = "SELECT COUNT(*) FROM dispatches WHERE kind = 'schedule' AND status = 'queued'"
        return int(env.query(sql)[0][0])

    eventually(lambda: waiting() >= 2, timeout=15, what="two fires waiting behind the run")
    env.cli("jobs", "disable", "q")
    eventually(lambda: waiting() == 0, what="every waiting fire of the disabled job to end")
    fires = env.query(
        "SELECT status, outcome FROM dispatches WHERE kind = 'schedule' AND slot IS NOT NULL"
    )
    assert fires and set(fires) == {("done", "skipped")}, fires
    reasons = env.query("SELECT reason FROM runs WHERE status = 'skipped'")
    assert reasons == [("disabled",)] * len(fires)
    # the next slot, committed ahead (not due yet), is withdrawn: no run, no record
    sql = "SELECT status, last_error FROM dispatches WHERE kind = 'schedule' AND slot IS NULL"
    ahead = env.query(sql)
    assert len(ahead) <= 1 and all(
        s == "cancelled" and e.startswith("withdrawn") for s, e in ahead
    ), ahead
    assert env.cli_json("status")["dispatches"]["queued"] == 0
    assert daemon.poll() is None  # the run still holds it

    (env.tmp / "go").touch()
    assert env.wait_exit(daemon, timeout=20) == 0, env.logs()  # idle once the run ended
    assert env.status(running) == "done"
    assert _lines(env, "runs.log") == ["start", "end"]  # no waiting fire ran
