"""The fast spawn path (actors/executors/child.py) and the gate of procs.spawn_group:
exit codes and signals through the pidfd, the command's shell environment, the check
that the runtime is still the parent, and the preexec_fn fallback without setpriv."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from shepherd.actors.executors import child, procs

LINUX = sys.platform.startswith("linux")


async def _drain(proc: child.Child) -> tuple[bytes, bytes]:
    assert proc.stdout is not None and proc.stderr is not None
    return await proc.stdout.read(), await proc.stderr.read()


@pytest.mark.anyio
async def test_exit_codes_and_signals_come_back_through_wait() -> None:
    ok = await procs.spawn_group("/bin/sh", "echo out; echo err >&2", run_id=1, registry=None)
    assert await _drain(ok) == (b"out\n", b"err\n")
    assert await ok.wait() == 0 and ok.returncode == 0
    bad = await procs.spawn_group("/bin/sh", "exit 3", run_id=1, registry=None)
    await _drain(bad)
    assert await bad.wait() == 3
    slow = await procs.spawn_group("/bin/sh", "sleep 30", run_id=1, registry=None)
    await procs.end_group(slow)  # kills the group, then reaps the leader
    assert slow.returncode == -9


@pytest.mark.anyio
async def test_the_command_runs_as_under_sh_c(tmp_path: Path) -> None:
    """No positional parameters, $0 is the shell, stdin is /dev/null, the leader's pid."""
    cmd = 'echo "$#|$0|$$"; cat; echo "[$_g]"'
    proc = await procs.spawn_group("/bin/sh", cmd, run_id=1, registry=None, cwd=str(tmp_path))
    out, _ = await _drain(proc)
    assert await proc.wait() == 0
    assert out.decode().splitlines() == [f"0|/bin/sh|{proc.pid}", "[]"]


@pytest.mark.anyio
async def test_the_gate_refuses_a_shell_whose_parent_is_not_the_runtime(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = ["/bin/sh", "-c", procs._GATE, "/bin/sh", f"touch {marker}", str(os.getpid() + 1)]
    proc = await child.start(argv, env=None, cwd=None, preexec_fn=None)
    proc.open_gate(b"go\n")
    await _drain(proc)
    assert await proc.wait() == 125
    assert not marker.exists()


@pytest.mark.anyio
async def test_eof_at_the_gate_never_starts_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = ["/bin/sh", "-c", procs._GATE, "/bin/sh", f"touch {marker}"]
    proc = await child.start(argv, env=None, cwd=None, preexec_fn=None)
    proc.open_gate(b"")
    await _drain(proc)
    assert await proc.wait() == 125
    assert not marker.exists()


def test_setpriv_arms_the_signal_where_it_is_installed() -> None:
    if not LINUX:
        pytest.skip("a parent-death signal is Linux only")
    prefix, preexec = child.pdeathsig()
    if child._setpriv() is None:
        assert prefix == [] and preexec is not None  # the fork path, armed in the child
    else:
        assert prefix[1:] == ["--pdeathsig", "KILL"] and preexec is None  # the vfork path


@pytest.mark.anyio
async def test_without_setpriv_the_signal_is_armed_by_a_preexec_fn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not LINUX:
        pytest.skip("a parent-death signal is Linux only")
    monkeypatch.setattr(child, "_setpriv", lambda: None)
    argv, preexec = procs._argv("/bin/sh", "true")
    assert argv[0] == "/bin/sh" and preexec is not None
    proc = await procs.spawn_group("/bin/sh", "grep PPid /proc/$$/status", run_id=1, registry=None)
    out, _ = await _drain(proc)
    assert await proc.wait() == 0
    assert out.split() == [b"PPid:", str(os.getpid()).encode()]


@pytest.mark.anyio
async def test_without_pidfd_it_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "_PIDFD", False)
    proc = await procs.spawn_group("/bin/sh", "echo $#; exit 4", run_id=1, registry=None)
    assert type(proc).__name__ == "_AsyncioChild"
    assert await _drain(proc) == (b"0\n", b"")
    assert await proc.wait() == 4
    slow = await procs.spawn_group("/bin/sh", "sleep 30", run_id=1, registry=None)
    await procs.end_group(slow)
    assert slow.returncode == -9


@pytest.mark.anyio
async def test_a_cancelled_spawn_kills_the_group_before_the_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Stuck:
        async def record_process(self, run_id: int, proc: procs.ProcessId) -> None:
            await anyio.sleep_forever()

    with anyio.move_on_after(0.2):
        await procs.spawn_group("/bin/sh", f"touch {marker}", run_id=1, registry=Stuck())
    assert not marker.exists()
