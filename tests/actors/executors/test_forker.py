"""The fork server (actors/executors/forker.py, fork_server.py): real processes.

What it must do: start each command as the leader of a session of its own, as its
parent; give back its exit code or signal, with SIGTERM and SIGINT at their defaults
in the command; raise as ``Popen`` does when a command cannot start; pass the
environment and the working directory; when it dies, its commands die and the next
spawn starts another server; ``close`` ends it and what is left of its groups; and a
runtime forks its shell commands through one.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from shepherd.actors.executors import forker, procs
from shepherd.actors.executors.child import Child
from shepherd.runtime import EnqueueRequest, OutcomeEvent
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config
from shepherd.store.models import JobSpec

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not forker.available(), reason="the fork server is Linux only"),
]


async def _read_all(proc: Child) -> bytes:
    assert proc.stdout is not None
    out = b""
    while chunk := await proc.stdout.read(65536):
        out += chunk
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


async def _gone(*pids: int) -> bool:
    with anyio.move_on_after(5):
        while any(map(_alive, pids)):
            await anyio.sleep(0.005)
    return not any(map(_alive, pids))


@pytest.fixture
def server() -> Iterator[forker.ForkServer]:
    made = forker.ForkServer()
    try:
        yield made
    finally:
        made.close()


async def test_a_command_leads_a_session_of_its_own_under_the_server(
    server: forker.ForkServer,
) -> None:
    proc = await server.start(["/bin/sh", "-c", "read x; echo $PPID"], env=None, cwd=None)
    assert os.getsid(proc.pid) == os.getpgid(proc.pid) == proc.pid
    proc.open_gate(b"go\n")
    assert int(await _read_all(proc)) == server.pid != os.getpid()
    assert await proc.wait() == 0


async def test_exit_codes_and_signals_come_back_with_the_signals_at_their_defaults(
    server: forker.ForkServer,
) -> None:
    for command, code in [
        ("exit 3", 3),
        ("kill -TERM $$; sleep 5", -signal.SIGTERM),  # not ignored, as in the server
        ("kill -INT $$; sleep 5", -signal.SIGINT),
    ]:
        proc = await server.start(["/bin/sh", "-c", command], env=None, cwd=None)
        proc.open_gate(b"")
        await _read_all(proc)
        assert await proc.wait() == code, command
    proc = await server.start(["/bin/cat", "/proc/self/status"], env=None, cwd=None)
    proc.open_gate(b"")
    status = dict(line.split(":\t", 1) for line in (await _read_all(proc)).decode().splitlines())
    assert int(status["SigIgn"], 16) == 0  # SIGPIPE too: nothing is ignored in a command
    assert int(status["SigBlk"], 16) == 0
    await proc.wait()


async def test_a_command_that_cannot_start_raises_as_popen_does(
    tmp_path: Path, server: forker.ForkServer
) -> None:
    with pytest.raises(FileNotFoundError):
        await server.start([str(tmp_path / "no-such-shell"), "-c", "true"], env=None, cwd=None)
    with pytest.raises(FileNotFoundError):
        await server.start(["/bin/sh", "-c", "true"], env=None, cwd=str(tmp_path / "nope"))
    with pytest.raises(OSError, match="embedded null byte"):  # Popen's ValueError
        await server.start(["/bin/sh", "-c", "echo \x00 hi"], env=None, cwd=None)
    with pytest.raises(OSError, match="embedded null byte"):
        await server.start(["/bin/sh", "-c", "true"], env=None, cwd="/tmp\x00x")
    proc = await server.start(["/bin/sh", "-c", "exit 0"], env=None, cwd=None)
    proc.open_gate(b"")
    assert await proc.wait() == 0  # the server is still there


async def test_the_environment_and_the_directory_reach_the_command(
    tmp_path: Path, server: forker.ForkServer
) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ONLY_THIS": "é 1"}
    proc = await server.start(
        ["/bin/sh", "-c", 'printf "%s|%s|%s" "$ONLY_THIS" "$HOME" "$(pwd)"'],
        env=env, cwd=str(tmp_path),
    )  # fmt: skip
    proc.open_gate(b"")
    assert (await _read_all(proc)).decode() == f"é 1||{tmp_path}"
    assert await proc.wait() == 0


async def test_a_dead_server_takes_its_commands_and_the_next_spawn_starts_another(
    server: forker.ForkServer,
) -> None:
    proc = await server.start(["/bin/sh", "-c", "sleep 30"], env=None, cwd=None)
    first = server.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with anyio.fail_after(10):
        assert await proc.wait() == -signal.SIGKILL
    assert await _gone(proc.pid)
    again = await server.start(["/bin/sh", "-c", "exit 4"], env=None, cwd=None)
    again.open_gate(b"")
    assert await again.wait() == 4
    assert server.pid not in (None, first)


async def test_close_ends_the_server_and_what_is_left_of_its_groups(
    server: forker.ForkServer,
) -> None:
    proc = await server.start(["/bin/sh", "-c", "sleep 30 & echo $!; sleep 30"], env=None,
                              cwd=None)  # fmt: skip
    assert proc.stdout is not None
    other = int((await proc.stdout.read(64)).split()[0])
    pid = server.pid
    assert pid is not None
    server.close()
    assert await _gone(proc.pid, other, pid)
    assert server.pid is None


async def test_a_request_larger_than_the_socket_is_refused_as_too_big(
    server: forker.ForkServer,
) -> None:
    with pytest.raises(forker.TooBig):
        await server.start(["/bin/sh", "-c", "true"], env={"BIG": "x" * (8 << 20)}, cwd=None)


async def test_a_runtime_forks_its_shell_commands_through_its_server(tmp_path: Path) -> None:
    cfg = Config(database=str(tmp_path / "s.db"))
    async with Runtime.open(cfg) as rt:
        await rt.add_job(JobSpec(name="ppid", executor="shell", target="echo $PPID"))
        async with rt.subscribe(OutcomeEvent) as events:
            [dispatch] = await rt.enqueue_many([EnqueueRequest(job="ppid")])
            with anyio.fail_after(20):
                async for ev in events:
                    assert isinstance(ev, OutcomeEvent)
                    if ev.dispatch_id == dispatch and ev.final:
                        break
        assert ev.outcome == "ok"
        run = await rt.store.run(ev.run_id)
        assert run is not None and run.stdout is not None
        parent = int(run.stdout)
    assert parent != os.getpid()
    assert await _gone(parent)  # the server ended with the runtime


async def test_a_fork_server_that_cannot_run_leaves_the_spawn_to_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(forker, "_SERVER", tmp_path / "missing.py")  # python exits at once
    server = forker.ForkServer()
    token = forker.CURRENT.set(server)
    try:
        proc = await procs.spawn_group("/bin/sh", "echo ran", run_id=1, registry=None)
        assert await _read_all(proc) == b"ran\n"
        assert await proc.wait() == 0
    finally:
        forker.CURRENT.reset(token)
        server.close()
    assert "the fork server exited" in caplog.text
    assert "started by the runtime itself" in caplog.text
