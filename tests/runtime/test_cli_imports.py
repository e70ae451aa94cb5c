"""What a command imports: ``shepherd enqueue`` and ``import shepherd`` load only what
they use (the whole actor tree, httpx and the event loop cost a CLI call ~0.3 s).

Each check runs a fresh interpreter and reads its ``sys.modules``: behaviour, not time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from shepherd.actors.ingest_wire import Answer, EnqueueItem, frame, split_frames, stream_path

TREE = ("shepherd.actors.dispatcher.actor", "shepherd.runtime.app", "shepherd.runtime.tree")
LOOP = ("asyncio", "anyio._backends._asyncio", "aiosqlite", "uvloop")

_SCRIPT = """
import json, sys
from shepherd.runtime import cli
rc = cli.main(sys.argv[1:])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def _cli_modules(tmp: Path, *argv: str) -> tuple[int, set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *argv], capture_output=True, text=True, cwd=tmp, timeout=60
    )
    *out, last = proc.stdout.strip().splitlines()
    got = json.loads(last)
    return got["rc"], set(got["modules"]), "\n".join(out) + proc.stderr


@contextmanager
def stand_in_daemon(db: str, dispatch_id: int) -> Iterator[list[EnqueueItem]]:
    """A listener on ``db``'s enqueue socket answering one request with ``dispatch_id``;
    yields the requests it got (complete once the block has ended)."""
    path = stream_path(db)
    seen: list[EnqueueItem] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        try:
            listener.listen(1)
            listener.settimeout(60)

            def serve() -> None:
                conn, _ = listener.accept()
                with conn:
                    buf = bytearray()
                    while not (bodies := split_frames(buf)):
                        buf += conn.recv(65536)
                    item = msgspec.msgpack.decode(bodies[0], type=EnqueueItem)
                    seen.append(item)
                    answer = Answer(id=item.id, dispatch=dispatch_id)
                    conn.sendall(frame(msgspec.msgpack.encode(answer)))

            thread = threading.Thread(target=serve)
            thread.start()
            yield seen
            thread.join(timeout=60)
        finally:
            os.unlink(path)


def _job(tmp: Path, db: Path) -> None:
    argv = [sys.executable, "-m", "shepherd", "--database", str(db), "jobs", "add", "j"]
    argv += ["--executor", "shell", "--target", "true"]
    subprocess.run(argv, check=True, capture_output=True, cwd=tmp, timeout=60)


def test_enqueue_without_a_daemon_writes_directly_without_tree_or_loop(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    _job(tmp_path, db)
    rc, modules, out = _cli_modules(tmp_path, "--database", str(db), "enqueue", "j")
    assert rc == 0, out
    assert out.strip() == "1"
    # an existing SQLite file: written on a plain connection, no event loop either;
    # msgspec without typing_extensions (and the inspect module it loads: runtime/_cli_boot.py)
    heavy = modules & {*TREE, *LOOP, "httpx", "typing_extensions", "inspect"}
    assert not heavy, sorted(heavy)


_BOOTED = """
import sys
import shepherd.runtime.cli
assert "typing_extensions" not in sys.modules, "the CLI's imports loaded it"
from typing import Annotated, NotRequired, TypedDict
import msgspec
import typing_extensions  # a later import (anyio's, in run) gets the module
assert typing_extensions.NotRequired is NotRequired

class Spec(TypedDict):
    a: int
    b: NotRequired[Annotated[int, msgspec.Meta(ge=0)]]

class Row(msgspec.Struct):
    n: Annotated[int, msgspec.Meta(le=3)]
    spec: Spec | None = None

assert msgspec.convert({"n": 1, "spec": {"a": 1}}, Row) == Row(1, {"a": 1})
for bad in ({"n": 4}, {"n": 1, "spec": {"a": 1, "b": -1}}, {"n": 1, "spec": {"b": 1}}):
    try:
        msgspec.convert(bad, Row)
    except msgspec.ValidationError:
        continue
    raise SystemExit(f"accepted {bad}")
print("ok")
"""


def test_msgspec_loaded_by_the_cli_validates_as_with_typing_extensions() -> None:
    """The CLI loads msgspec with typing_extensions blocked (``runtime/_cli_boot.py``):
    its constraints, ``Annotated`` and ``NotRequired`` still hold, and typing_extensions
    can still be imported afterwards."""
    proc = subprocess.run([sys.executable, "-c", _BOOTED], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_enqueue_through_a_daemon_socket_loads_no_event_loop(tmp_path: Path) -> None:
    """A stand-in daemon (a listener answering dispatch 42) on the database's socket."""
    db = tmp_path / "q.db"
    _job(tmp_path, db)
    argv = ("--database", str(db), "enqueue", "j", "--delay", "5m", "--priority", "high")
    with stand_in_daemon(str(db), 42) as seen:
        rc, modules, out = _cli_modules(tmp_path, *argv)
    assert rc == 0 and out.strip() == "42", out
    assert [(i.job, i.delay, i.priority) for i in seen] == [("j", 300.0, "high")]
    heavy = modules & {*TREE, *LOOP, "httpx"}
    assert not heavy, sorted(heavy)


_JOBS = """
database = "q.db"

[[jobs]]
name = "j"
executor = "shell"
target = "true"
cron = "0 3 * * *"
[jobs.options]
cwd = "/tmp"
output_summary = 2000

[[jobs]]
name = "py"
executor = "python"
target = "tasks:report"
every = "1h"
payload = { to = "ops" }

[[jobs]]
name = "dog"
executor = "watchdog"
target = "pgrep -f worker"
every = "5m"
[jobs.options]
timeout_min = 30
started_at = "2026-01-01T00:00:00Z"

[[jobs]]
name = "worker"
executor = "external"
capabilities = ["gpu"]
"""

#: what the socket's path needs not (``actors.socket_path``): OpenSSL
PATH = ("hashlib", "_hashlib")
#: what checking a config's [[jobs]] must not load: the executors' runtime modules
EXECUTORS = tuple(
    f"shepherd.actors.executors.{m}"
    for m in (
        "base",
        "shell",
        "python",
        "watchdog",
        "external",
        "agent",
        "event",
        "gateway",
        "procs",
    )
)


def test_a_config_with_jobs_of_every_cheap_executor_loads_no_event_loop(tmp_path: Path) -> None:
    """``status`` and ``enqueue`` (through a stand-in daemon) validate the config's jobs
    as ``run`` would, with the executors' checks only (``actors.executors.specs``)."""
    (tmp_path / "shepherd.toml").write_text(_JOBS)
    db = tmp_path / "q.db"
    _job(tmp_path, db)
    rc, modules, out = _cli_modules(tmp_path, "status", "--json")
    assert rc == 0, out
    assert "shepherd.actors.executors.specs" in modules
    heavy = modules & {*TREE, *LOOP, *EXECUTORS, *PATH, "anyio", "httpx"}
    assert not heavy, sorted(heavy)

    with stand_in_daemon(str(db), 7):
        rc, modules, out = _cli_modules(tmp_path, "enqueue", "j")
    assert rc == 0 and out.strip() == "7", out
    heavy = modules & {*TREE, *LOOP, *EXECUTORS, *PATH, "anyio", "httpx"}
    assert not heavy, sorted(heavy)


def test_a_bad_config_job_is_refused_without_the_executors(tmp_path: Path) -> None:
    bad = _JOBS.replace("timeout_min = 30", "timeout_min = 0")
    (tmp_path / "shepherd.toml").write_text(bad)
    rc, modules, out = _cli_modules(tmp_path, "status")
    assert rc == 2, out
    assert "config: jobs[2] (dog)" in out and "options.timeout_min" in out, out
    assert not modules & {*LOOP, *EXECUTORS, "anyio"}, sorted(modules & {*LOOP, *EXECUTORS})


def test_import_shepherd_is_lazy_and_complete() -> None:
    script = (
        "import json, sys, shepherd\n"
        "before = sorted(sys.modules)\n"
        "from shepherd import Runtime, JobSpec, RetryPolicy, Producer\n"
        "missing = [n for n in shepherd.__all__ if getattr(shepherd, n, None) is None]\n"
        "print(json.dumps({'before': before, 'missing': missing}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    got = json.loads(proc.stdout)
    assert got["missing"] == []
    assert not set(got["before"]) & {*TREE, *LOOP, "httpx", "shepherd.store.models"}


def test_status_reads_without_an_event_loop_or_the_actor_tree(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    _job(tmp_path, db)
    rc, modules, out = _cli_modules(tmp_path, "--database", str(db), "status", "--json")
    assert rc == 0, out
    assert json.loads(out)["jobs"] == 1
    heavy = modules & {*TREE, *LOOP, "httpx", "shepherd.actors.messages", "shepherd.runtime.jobs"}
    assert not heavy, sorted(heavy)


def test_loading_the_config_imports_no_actor() -> None:
    script = (
        "import json, sys\n"
        "from shepherd.runtime.config import load_config\n"
        "load_config(None)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    modules = set(json.loads(proc.stdout))
    packages = {f"shepherd.actors.{p}" for p in ("dispatcher", "executors", "router", "spool")}
    actors = {m for m in modules if m.startswith("shepherd.actors.")} - packages
    # the sections' config Structs only: no actor, no event loop, no store engine
    assert all(m.endswith(("_config", ".config", ".rates")) for m in actors), sorted(actors)
    heavy = modules & {*LOOP, "sqlite3", "logging", "hashlib", "shepherd.store.ops"}
    assert not heavy, sorted(heavy)
