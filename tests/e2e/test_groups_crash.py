"""End to end: a task group half reported when the real daemon is SIGKILLed. After the
restart the silent member still times out, the report made while the daemon was down
counts, and the summary is queued exactly once and reaches its webhook once, also
across a second kill after it was sent."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_daemon_kill import Env, eventually

pytestmark = pytest.mark.e2e


class Hook:
    """A webhook sink: records every POSTed delivery."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                hook.posts.append(json.loads(self.rfile.read(size)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def env(tmp_path: Path, hook: Hook) -> Iterator[Env]:
    e = Env(tmp_path)
    e.config.write_text(
        e.config.read_text() + f'\n[delivery]\nwebhooks = {{ hook = "{hook.url}" }}\n'
    )
    yield e
    for proc in e.daemons:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _kill(env: Env) -> None:
    daemon = env.daemons[-1]
    os.kill(daemon.pid, signal.SIGKILL)
    assert env.wait_exit(daemon) == -signal.SIGKILL


def test_a_half_reported_group_survives_sigkill_and_is_summarised_once(
    env: Env, hook: Hook
) -> None:
    env.start()
    # 5 s: room for three CLI calls on a loaded machine before c's silence counts
    env.cli("groups", "create", "crash", "--members", "a,b,c", "--timeout", "5s",
            "--channel", "hook")  # fmt: skip
    env.cli("groups", "report", "crash", "a", "completed", "-m", "fine")
    env.cli("groups", "report", "crash", "c", "started")
    _kill(env)
    env.cli("groups", "report", "crash", "b", "failed", "-m", "boom")  # no daemon
    assert env.query("SELECT status FROM task_groups") == [("open",)]

    env.start()  # c has been silent since it started: dead 5 s after the group began
    eventually(lambda: hook.posts, timeout=15, what="the summary at the webhook")
    assert env.query("SELECT status FROM task_groups") == [("failed",)]
    members = env.query("SELECT label, status FROM task_group_members ORDER BY pos")
    assert members == [("a", "completed"), ("b", "failed"), ("c", "dead")]
    assert hook.posts[0]["text"] == (
        "Task group crash failed: 1/3 ok\n[ok] a: fine\n[FAILED] b: boom\n[DEAD] c: timed out"
    )

    # the send is recorded (a kill before that re-sends: deliveries are at least once)
    eventually(lambda: env.query("SELECT status FROM deliveries") == [("sent",)], what="sent")
    _kill(env)  # after the summary was sent: a restart must not queue or send it again
    env.start()
    env.cli("groups", "create", "after", "--members", "x", "--channel", "hook")
    env.cli("groups", "report", "after", "x", "completed")
    eventually(lambda: len(hook.posts) >= 2, timeout=8, what="the second group's summary")
    bodies = [p["text"].splitlines()[0] for p in hook.posts]
    assert bodies == ["Task group crash failed: 1/3 ok", "Task group after completed: 1/1 ok"]
    # the webhook answered before the daemon recorded the send: wait for the record
    sent = [("group", "sent"), ("group", "sent")]
    eventually(lambda: env.query("SELECT kind, status FROM deliveries ORDER BY id") == sent,
               what="both summaries recorded sent")  # fmt: skip
