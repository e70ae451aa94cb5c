"""End to end: the real daemon (``python -m shepherd run``) as a subprocess, fed by the
real CLI, killed for real.

- a dispatch enqueued by the CLI while the daemon runs is picked up (latency printed);
- SIGKILL mid-work, restart: every committed dispatch ends final, no run left running;
- SIGTERM / SIGINT: graceful drain, exit 0, the process is gone;
- a second SIGTERM during the drain cancels at once: exit 130, no subprocess left;
- a ``sleep 30`` shell job with a 1 s timeout ends ``timeout`` and leaves no process.

Each test runs on SQLite and on PostgreSQL (``db_path``), except the second daemon's
refusal, which is the SQLite lock file's (PostgreSQL runtimes are nodes of a cluster).
On PostgreSQL the daemon has a stable ``[cluster] node`` name (``Env``), as an operator
runs it: a restarted daemon takes over its killed incarnation's runs at once, without
waiting for its lease to run out. The checks read through ``Store`` (protocol reads).

No fixed sleeps: everything polls with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shepherd.runtime._cli_store import daemon_pid
from shepherd.store.errors import StoreError
from shepherd.store.factory import is_postgres, open_store
from shepherd.store.models import Dispatch, Run
from shepherd.store.protocol import Store
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.engines("sqlite", "postgresql")]

FINAL = {"done", "dead", "cancelled"}
NODE = "e2e-node"  # the daemon's [cluster] node on PostgreSQL: the same across restarts
PAGE = 100
T = TypeVar("T")


def eventually(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "") -> Any:
    return wait_until(predicate, timeout=timeout, what=what)


async def all_runs(store: Store, **filters: Any) -> list[Run]:
    """Every run ``filters`` (``Store.runs``'s) choose, newest first, page by page
    (keyset: ``before`` the last id seen)."""
    out: list[Run] = []
    while True:
        page = await store.runs(limit=PAGE, **filters, **({"before": out[-1].id} if out else {}))
        out += page
        if len(page) < PAGE:
            return out


async def all_dispatches(store: Store, **filters: Any) -> list[Dispatch]:
    """Every dispatch ``filters`` choose, newest first, page by page (as ``all_runs``)."""
    out: list[Dispatch] = []
    while True:
        page = await store.dispatches(
            limit=PAGE, **filters, **({"before": out[-1].id} if out else {})
        )
        out += page
        if len(page) < PAGE:
            return out


class Env:
    """One temp directory: a config, a database, the daemon and CLI subprocesses.

    ``database``: a SQLite file (default ``<tmp>/e2e.db``) or a PostgreSQL URL; on
    PostgreSQL the config names the daemon ``[cluster] node = node``, so every restart
    is the same node (it takes over its previous incarnation's runs at once). ``read``
    runs protocol reads on a store of the test's own (opened on first use)."""

    def __init__(
        self,
        tmp: Path,
        *,
        concurrency: int = 4,
        grace: str = "5s",
        database: str | None = None,
        node: str = NODE,
    ) -> None:
        self.tmp = tmp
        self.db = database or str(tmp / "e2e.db")
        self.postgres = is_postgres(self.db)
        self.node = node
        self.config = tmp / "shepherd.toml"
        cluster = f'\n[cluster]\nnode = "{node}"\n' if self.postgres else ""
        self.config.write_text(
            f'database = "{database or "e2e.db"}"\nconcurrency = {concurrency}\n'
            f'shutdown_grace = "{grace}"\nlog_level = "INFO"\n{cluster}'
        )
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.log = tmp / "daemon.log"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._store: Store | None = None

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "shepherd", "--config", str(self.config), *args]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._argv(*args), capture_output=True, text=True, timeout=60, cwd=self.tmp
        )
        assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr}"
        return proc

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            proc = subprocess.Popen(self._argv("run", *args), stdout=log, stderr=log, cwd=self.tmp)
        self.daemons.append(proc)
        eventually(
            lambda: proc.poll() is not None or self.serving(proc.pid),
            what="the daemon to take its lock (SQLite) or join as a node (PostgreSQL)",
        )
        assert proc.poll() is None, f"the daemon exited early:\n{self.logs()}"
        return proc

    def serving(self, pid: int) -> bool:
        """Whether the daemon ``pid`` serves the database: it holds the SQLite file's
        lock, or it is the PostgreSQL node ``node``, alive."""
        if not self.postgres:
            return daemon_pid(self.db) == pid
        try:
            nodes = self.read(lambda s: s.nodes())
        except StoreError:  # no schema yet: the daemon is still creating it
            return False
        return any(n.name == self.node and n.pid == pid and n.status == "alive" for n in nodes)

    def read(self, fn: Callable[[Store], Awaitable[T]]) -> T:
        """``await fn(store)`` on the test's own store (protocol reads, any engine)."""

        async def call() -> T:
            if self._store is None:
                self._store = await open_store(self.db, create=False, check="bounded")
            return await fn(self._store)

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(call())

    def close(self) -> None:
        """Close the test's store (``read``) and its event loop."""
        if self._loop is None:
            return
        if self._store is not None:
            self._loop.run_until_complete(self._store.close(checkpoint=False))
            self._store = None
        self._loop.close()
        self._loop = None

    def running(self) -> list[Run]:
        """The runs recorded ``running`` now."""
        return self.read(lambda s: all_runs(s, status="running"))

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """SQL on the SQLite file (read-only)."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return conn.execute(sql, args).fetchall()

    def status(self, dispatch_id: int) -> str:
        if self.postgres:
            found = self.read(lambda s: s.dispatch(dispatch_id))
            assert found is not None, dispatch_id
            return found.status
        return str(self.query("SELECT status FROM dispatches WHERE id = ?", dispatch_id)[0][0])

    def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit:\n{self.logs()}") from None


@pytest.fixture
def make_env(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Env]]:
    """``Env`` maker: on the ``postgresql`` engine its database is ``db_path``'s fresh
    schema; otherwise the default SQLite file."""
    made: list[Env] = []

    def make(**kwargs: Any) -> Env:
        if engine == "postgresql":
            kwargs.setdefault("database", request.getfixturevalue("db_path"))
        made.append(Env(tmp_path, **kwargs))
        return made[-1]

    yield make
    for e in made:
        for proc in e.daemons:  # only the daemons this test started
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        e.close()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_sigkill_mid_work_then_restart_finishes_every_committed_dispatch(env: Env) -> None:
    env.cli(
        "jobs",
        "add",
        "work",
        "--executor",
        "shell",
        "--target",
        "sleep 0.4",
        "--guarantee",
        "at-least-once",
        "--timeout",
        "30s",
    )
    daemon = env.start()

    # a dispatch enqueued from another process while the daemon runs starts promptly
    began = time.monotonic()
    first = env.cli_json("enqueue", "work")["id"]
    committed = time.monotonic()
    eventually(lambda: env.status(first) != "queued", what="the first dispatch to start")
    print(
        f"\nCLI enqueue took {committed - began:.3f}s (process start included); "
        f"picked up {time.monotonic() - committed:.3f}s after it returned"
    )

    # more work from concurrent CLI processes, then SIGKILL while runs are in flight
    producers = [
        subprocess.Popen(
            env._argv("enqueue", "work", "--json"),
            cwd=env.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(12)
    ]
    ids = [first]
    for p in producers:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        ids.append(json.loads(out)["id"])
    assert len(set(ids)) == 13
    eventually(env.running, what="runs in flight")
    os.kill(daemon.pid, signal.SIGKILL)
    assert env.wait_exit(daemon) == -signal.SIGKILL
    left = len(env.running())
    assert left > 0, "the kill should have caught runs in flight"

    restarted = env.start("--exit-when-idle", "--for", "60s")
    assert env.wait_exit(restarted, timeout=60) == 0, env.logs()

    statuses = {d.id: d.status for d in env.read(all_dispatches)}
    assert set(statuses) == set(ids)
    assert all(s in FINAL for s in statuses.values()), statuses
    # at-least-once: the runs the kill interrupted are replayed, so everything is done
    assert set(statuses.values()) == {"done"}, statuses
    assert env.running() == []
    crashed = env.read(lambda s: all_runs(s, status="crashed"))
    assert len(crashed) == left
    assert "orphaned" in env.logs()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_drains_and_exits_0(env: Env, signum: int) -> None:
    env.cli("jobs", "add", "short", "--executor", "shell", "--target", "sleep 0.5")
    daemon = env.start()
    dispatch_id = env.cli_json("enqueue", "short")["id"]
    eventually(lambda: env.status(dispatch_id) == "running", what="the run to start")

    os.kill(daemon.pid, signum)
    assert env.wait_exit(daemon) == 0, env.logs()
    with pytest.raises(ProcessLookupError):
        os.kill(daemon.pid, 0)
    if env.postgres:  # the node left the cluster: no rescue is due
        assert [(n.name, n.status) for n in env.read(lambda s: s.nodes())] == [(NODE, "left")]
    else:
        assert daemon_pid(env.db) is None
    assert env.status(dispatch_id) == "done"  # the grace period let it finish
    assert "daemon.stopped" in env.logs()
    status = env.cli_json("status")
    assert status["daemon"]["serving"] is False and status["runs_running"] == 0
    assert status["instance"]["pid"] == daemon.pid and status["instance"]["stopped_at"]


def test_second_sigterm_during_drain_cancels_at_once(make_env: Callable[..., Env]) -> None:
    env = make_env(grace="60s")
    marker = f"30.{uuid.uuid4().int % 10**8:08d}"
    env.cli(
        "jobs",
        "add",
        "stuck",
        "--executor",
        "shell",
        "--target",
        f"sleep {marker}",
        "--timeout",
        "5m",
    )
    daemon = env.start()
    dispatch_id = env.cli_json("enqueue", "stuck")["id"]
    eventually(lambda: _processes_with(marker), what="the sleep to start")
    assert env.status(dispatch_id) == "running"

    os.kill(daemon.pid, signal.SIGTERM)
    eventually(lambda: "daemon.stopping" in env.logs(), what="the drain to begin")
    os.kill(daemon.pid, signal.SIGTERM)
    assert env.wait_exit(daemon, timeout=15) == 130, env.logs()
    eventually(lambda: not _processes_with(marker), timeout=5, what="the sleep to go")


def test_shell_timeout_kills_the_process_and_records_timeout(env: Env) -> None:
    marker = f"30.{uuid.uuid4().int % 10**8:08d}"  # `sleep 30.xxxxxxxx`: unique argv
    env.cli(
        "jobs",
        "add",
        "hang",
        "--executor",
        "shell",
        "--target",
        f"sleep {marker}",
        "--timeout",
        "1s",
        "--max-attempts",
        "1",
    )
    daemon = env.start()
    dispatch_id = env.cli_json("enqueue", "hang")["id"]
    eventually(lambda: _processes_with(marker), what="the sleep to start")

    eventually(lambda: env.status(dispatch_id) in FINAL, timeout=15, what="the timeout")
    runs = env.cli_json("runs", "list", "--job", "hang")
    assert [r["status"] for r in runs] == ["timeout"]
    assert runs[0]["timed_out"] is True
    assert env.cli_json("dlq", "list")[0]["id"] == dispatch_id
    eventually(lambda: not _processes_with(marker), timeout=5, what="no sleep 30 left")

    os.kill(daemon.pid, signal.SIGTERM)
    assert env.wait_exit(daemon) == 0, env.logs()


@pytest.mark.engines("sqlite")  # the lock file's; PostgreSQL runtimes are nodes of a cluster
def test_second_daemon_on_the_same_database_exits_3(env: Env) -> None:
    daemon = env.start()
    proc = subprocess.run(
        env._argv("run", "--for", "5s"), capture_output=True, text=True, timeout=60, cwd=env.tmp
    )
    assert proc.returncode == 3, proc.stderr
    assert "already served" in proc.stderr and "StoreError" in proc.stderr
    assert daemon.poll() is None  # the first one is untouched
    os.kill(daemon.pid, signal.SIGTERM)
    assert env.wait_exit(daemon) == 0
