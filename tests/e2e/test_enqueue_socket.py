"""End to end: other processes enqueue through the daemon's enqueue socket.

- ``shepherd enqueue`` with a daemon serving the database goes through the socket: the
  dispatch row carries the daemon's origin (not ``cli:<pid>``) and the daemon counts
  the request; the socket file is mode 0600;
- with no daemon, the CLI and ``Producer`` write directly (origin ``cli:<pid>``);
- a bad request gets an error answer naming the field, and the connection stays usable;
- SIGKILL of the daemon while a producer streams: every id the producer was given is a
  committed row, and the producer is told the rest are unknown (``Disconnected``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shepherd.actors.ingest_wire import Answer, EnqueueItem, frame, split_frames, stream_path
from shepherd.runtime.producer import Disconnected, Producer
from shepherd.store.errors import ConfigError, NotFound
from tests.e2e.test_daemon_kill import Env, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make(**kwargs: Any) -> Env:
        made.append(Env(tmp_path, **kwargs))
        return made[-1]

    yield make
    for e in made:
        for proc in e.daemons:  # only the daemons this test started
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        with contextlib.suppress(FileNotFoundError):  # left by a killed daemon
            os.unlink(stream_path(e.db))


def _served(make_env: Callable[..., Env]) -> Env:
    env = make_env()
    env.cli("jobs", "add", "j", "--executor", "shell", "--target", "true")
    env.start()
    eventually(lambda: _listening(stream_path(env.db)), what="the enqueue socket")
    return env


def _listening(path: str) -> bool:
    """The socket accepts connections (its file exists from the bind, before listen)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _fail(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(env._argv(*args), capture_output=True, text=True, timeout=60, cwd=env.tmp)
    assert proc.returncode != 0, f"{args} succeeded: {proc.stdout}"
    return proc


def _origins(env: Env) -> dict[int, str]:
    return dict(env.query("SELECT id, origin FROM dispatches"))  # type: ignore[arg-type]


def test_cli_enqueue_goes_through_the_daemon_socket(make_env: Callable[..., Env]) -> None:
    env = _served(make_env)
    mode = stat.S_IMODE(os.stat(stream_path(env.db)).st_mode)
    assert mode == 0o600
    got = env.cli_json("enqueue", "j", "--payload", '{"a": 1}', "--priority", "high")
    origin = _origins(env)[got["id"]]
    assert not origin.startswith("cli:"), origin  # the daemon committed it
    assert env.query("SELECT payload FROM dispatches WHERE id = ?", got["id"]) == [(b'{"a":1}',)]
    eventually(lambda: env.status(got["id"]) == "done", what="the run")
    # errors are the in-process ones, named by flag; exit codes as before
    bad = _fail(env, "enqueue", "j", "--owner", " ")
    assert bad.returncode == 2 and "--owner: must be a non-empty string" in bad.stderr
    missing = _fail(env, "enqueue", "nope")
    assert missing.returncode == 1 and "no job named 'nope'" in missing.stderr
    first = env.cli("enqueue", "j", "--idempotency-key", "k").stdout.strip()
    again = env.cli("enqueue", "j", "--idempotency-key", "k").stdout
    assert again.startswith(f"{first} (the existing dispatch")


def test_no_daemon_means_a_direct_write(make_env: Callable[..., Env]) -> None:
    env = make_env()
    env.cli("jobs", "add", "j", "--executor", "shell", "--target", "true")
    got = env.cli_json("enqueue", "j")
    assert _origins(env)[got["id"]].startswith("cli:")
    with Producer(env.db) as p:
        ids = p.enqueue_many([{"job": "j"}, {"job": "nope"}, {"job": "j", "delay": 5}])
        assert p.direct == 3 and p.sent == 0
    assert isinstance(ids[0], int) and isinstance(ids[2], int)
    assert isinstance(ids[1], NotFound)
    assert {_origins(env)[i].startswith("cli:") for i in (ids[0], ids[2])} == {True}


def _exchange(sock: socket.socket, data: bytes, count: int) -> list[Answer]:
    sock.sendall(data)
    buf = bytearray()
    out: list[Answer] = []
    while len(out) < count:
        chunk = sock.recv(65536)
        assert chunk, "the daemon closed the connection"
        buf += chunk
        out += [msgspec.msgpack.decode(b, type=Answer) for b in split_frames(buf)]
    return out


def test_a_bad_request_gets_an_error_answer_and_the_rest_go_in(
    make_env: Callable[..., Env],
) -> None:
    env = _served(make_env)
    enc = msgspec.msgpack.encode
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(stream_path(env.db))
        sock.settimeout(20)
        data = b"".join(
            [
                frame(b"\xc1 not msgpack"),
                frame(enc({"id": 2, "job": "j", "max_attempts": "three"})),
                frame(enc(EnqueueItem(id=3, job="nope"))),
                frame(enc(EnqueueItem(id=4, job="j", expires_in=-1))),
                frame(enc(EnqueueItem(id=5, job="j", payload={"n": 5}))),
            ]
        )
        answers = {a.id: a for a in _exchange(sock, data, 5)}
        assert answers[0].kind == "ConfigError" and answers[0].dispatch is None
        assert answers[2].field == "max_attempts" and "Expected `int" in (answers[2].error or "")
        assert answers[3].kind == "NotFound" and answers[3].error == "no job named 'nope'"
        assert answers[4].field == "expires_in" and answers[4].dispatch is None
        assert answers[5].dispatch is not None and answers[5].error is None
        # the same connection still works
        [again] = _exchange(sock, frame(enc(EnqueueItem(id=6, job="j"))), 1)
        assert again.id == 6 and again.dispatch is not None
    ids = {answers[5].dispatch, again.dispatch}
    assert {i for i in _origins(env) if i in ids} == ids
    with Producer(env.db) as p:  # the producer API: the same errors, in place
        got = p.enqueue_many([{"job": "j"}, {"job": "j", "priority": "urgent"}, {"job": "j"}])
        assert p.sent == 3 and p.direct == 0
        assert isinstance(got[1], ConfigError) and "unknown priority 'urgent'" in str(got[1])
        assert isinstance(got[0], int) and isinstance(got[2], int)
        with pytest.raises(NotFound):
            p.enqueue("nope")
        # an integer past 64 bits, which msgpack frames cannot carry (JSON can): that
        # request is written directly, as with no daemon; the others go through it
        big = {"job": "j", "payload": {"a": 2**70}}
        sent, direct = p.sent, p.direct
        got = p.enqueue_many([{"job": "j"}, big, {"job": "j"}])
        assert all(isinstance(i, int) for i in got) and len(set(got)) == 3
        assert (p.sent - sent, p.direct - direct) == (2, 1)
    [(payload,)] = env.query("SELECT payload FROM dispatches WHERE id = ?", got[1])
    assert msgspec.json.decode(payload) == {"a": 2**70}
    code = env.cli("enqueue", "j", "--payload", '{"a": -9223372036854775809}')
    assert code.returncode == 0, code.stderr


def test_sigkill_mid_stream_every_returned_id_is_committed(
    make_env: Callable[..., Env],
) -> None:
    env = _served(make_env)
    daemon = env.daemons[-1]
    ids: list[int] = []
    outcome: dict[str, Any] = {}

    def stream() -> None:
        with Producer(env.db, timeout=20) as p:
            try:
                while True:
                    got = p.enqueue_many([{"job": "j", "payload": {"k": k}} for k in range(200)])
                    ids.extend(g for g in got if isinstance(g, int))
            except Disconnected as exc:
                outcome["late"] = [g for g in exc.results if isinstance(g, int)]
                outcome["unknown"] = sum(g is None for g in exc.results)

    thread = threading.Thread(target=stream)
    thread.start()
    eventually(lambda: len(ids) >= 2_000, timeout=30, what="ids streaming back")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=10)
    thread.join(timeout=30)
    assert not thread.is_alive() and "late" in outcome, "the producer was not told"
    returned = set(ids) | set(outcome["late"])
    rows = set(_origins(env))
    assert returned <= rows, f"{len(returned - rows)} ids returned but not committed"
    assert len(returned) == len(ids) + len(outcome["late"])  # no id given twice
