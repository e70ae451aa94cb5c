"""End to end: external workers against the real daemon (``python -m shepherd run``
with ``[http] listen``), SIGKILLed while leases are out, then restarted.

- at-least-once: the run that was out is replayed once and offered again with a new
  token; the old token's complete is refused (409) and counted; the replay completes;
- at-most-once: the run that was out ends ``crashed`` and is not offered again;
- Dispatch's task flow against the daemon: create → ASSIGNED to the capable agent →
  progress (RUNNING) → complete (COMPLETED, result); SIGTERM then exits 0.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.test_daemon_kill import Env, eventually
from tests.e2e.test_daemon_kill import make_env as make_env  # the fixture

pytestmark = pytest.mark.e2e

TOKEN = "worker-w1-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(env: Env, port: int) -> None:
    env.config.write_text(
        env.config.read_text()
        + f'\n[http]\nlisten = "127.0.0.1:{port}"\nrate_limit = 0\n'
        + f'[[http.tokens]]\nname = "w1"\nscope = "agent"\nagent = "w1"\ntoken = "{TOKEN}"\n'
        + '[[jobs]]\nname = "alo"\nexecutor = "external"\n'
        + 'delivery_guarantee = "at-least-once"\n'
        + '[[jobs]]\nname = "amo"\nexecutor = "external"\n'
        + 'delivery_guarantee = "at-most-once"\n'
    )


def client(port: int) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Agent-ID": "w1"}
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)


def up(c: httpx.Client) -> bool:
    try:
        return c.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def claim(c: httpx.Client, wait: float = 10.0) -> dict[str, Any] | None:
    got = c.post("/api/v1/workers/claim", json={"wait": wait})
    if got.status_code == 204:
        return None
    assert got.status_code == 200, got.text
    lease: dict[str, Any] = got.json()["lease"]
    return lease


def complete(c: httpx.Client, lease: dict[str, Any], result: Any) -> httpx.Response:
    return c.post(
        f"/api/v1/workers/leases/{lease['run_id']}/complete",
        json={"token": lease["token"], "result": result},
    )


def test_sigkill_with_leases_out(make_env: Callable[..., Env]) -> None:
    env = make_env()
    port = free_port()
    configure(env, port)
    daemon = env.start()
    with client(port) as c:
        eventually(lambda: up(c), what="the HTTP API", timeout=20)
        alo = int(env.cli("enqueue", "alo", "--payload", '{"n": 1}').stdout.strip())
        first = claim(c)
        assert first is not None and first["dispatch_id"] == alo
        amo = int(env.cli("enqueue", "amo").stdout.strip())
        second = claim(c)
        assert second is not None and second["dispatch_id"] == amo
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        env.start()
        eventually(lambda: up(c), what="the HTTP API after the restart", timeout=20)
        replay = claim(c)
        assert replay is not None, env.logs()
        assert replay["dispatch_id"] == alo and replay["payload"] == {"n": 1}
        assert replay["run_id"] != first["run_id"] and replay["token"] != first["token"]
        # the old leases' reports: stale (the runs were finalized by recovery)
        stale = complete(c, first, "from before the crash")
        assert stale.status_code == 409, stale.text
        assert complete(c, second, "late").status_code == 409
        assert complete(c, replay, {"ok": True}).status_code == 200
        eventually(lambda: env.status(alo) == "done", what="the replay to finish")
        # at-most-once: crashed, not replayed, nothing more on the board
        assert env.status(amo) in {"dead", "cancelled", "done"}
        runs = env.query("SELECT status FROM runs WHERE dispatch_id = ? ORDER BY id", amo)
        assert [r[0] for r in runs] == ["crashed"]
        alo_runs = env.query("SELECT status FROM runs WHERE dispatch_id = ? ORDER BY id", alo)
        assert [r[0] for r in alo_runs] == ["crashed", "ok"]
        started = time.monotonic()
        assert claim(c, wait=0.5) is None
        assert time.monotonic() - started >= 0.4  # it long-polled, then answered 204


def test_dispatch_task_flow_against_the_daemon(make_env: Callable[..., Env]) -> None:
    env = make_env()
    port = free_port()
    configure(env, port)
    env.config.write_text(
        env.config.read_text() + '[[agents.agent]]\nid = "w1"\ncapabilities = ["code"]\n'
    )
    daemon = env.start()
    with client(port) as c:
        eventually(lambda: up(c), what="the HTTP API", timeout=20)
        made = c.post("/api/v1/tasks", json={"title": "review", "required_capabilities": ["code"]})
        assert made.status_code == 201, made.text
        tid = made.json()["task_id"]
        assert made.json()["owner"] == "w1"
        eventually(
            lambda: c.get(f"/api/v1/tasks/{tid}").json()["status"] == "ASSIGNED",
            what="the task assigned to w1",
        )
        assert c.get(f"/api/v1/tasks/{tid}").json()["assigned_agent"] == "w1"
        assert c.post(f"/api/v1/tasks/{tid}/progress", json={"progress": 10}).status_code == 200
        assert c.get(f"/api/v1/tasks/{tid}").json()["status"] == "RUNNING"
        done = c.post(f"/api/v1/tasks/{tid}/complete", json={"result": {"lgtm": True}})
        assert done.status_code == 200, done.text
        eventually(lambda: env.status(int(tid)) == "done", what="the task's dispatch done")
        final = c.get(f"/api/v1/tasks/{tid}").json()
        assert final["status"] == "COMPLETED" and final["result"] == {"lgtm": True}
    daemon.send_signal(signal.SIGTERM)
    assert env.wait_exit(daemon) == 0
