"""Process groups of shell and watchdog runs: they die with the runtime, and what a
killed runtime leaves behind is found again and killed at the next start.

A run's command is the leader of a process group of its own (a new session: its pid is
the group id), started by ``spawn_group``. Two mechanisms keep the group from outliving
the runtime that started it:

1. **Killed with the runtime (Linux).** Where the runtime set a fork server
   (``forker.CURRENT``: every ``Runtime`` on Linux), the server starts the command and
   kills its whole group when the runtime's end of their socket closes: the runtime
   died (SIGKILL included) or closed it. Without one (``SHEPHERD_FORK_SERVER=0``, an
   executor used on its own), the child arms ``prctl(PR_SET_PDEATHSIG, SIGKILL)``
   before the command can start, so the kernel kills the leader the moment the runtime
   dies. Where util-linux's ``setpriv`` is installed the child execs ``setpriv
   --pdeathsig KILL`` first (no ``preexec_fn``, so the spawn takes CPython's vfork path:
   ``child.start``), and the gate below checks that its parent is still the runtime (a
   runtime that died before the signal was armed leaves the child to init: it exits
   125); without ``setpriv`` a ``preexec_fn`` arms it between fork and exec. The signal
   follows the *thread* that forked the child: the event loop's, which lives as long as
   the runtime. It reaches the leader only (a pipeline, ``cmd &`` are left to 2.).
2. **Recorded, and killed at the next start (every POSIX platform).** The command waits
   behind a gate (one line on its stdin) until the run has recorded its group id and the
   leader's start time (``ProcessId``) through the run's host
   (``ctx.host.record_process``): committed, or on a database the runtime owns
   appended to its process journal (``journal.py``: one ``write``, its commit not
   waited for); nothing of the command runs before. Crash
   recovery kills a recorded group that is still alive (``decide``) and waits until it
   is gone before it applies the delivery guarantee. The start time (Linux: field 22 of
   ``/proc/<pid>/stat``, clock ticks since the boot named by ``clock``; elsewhere ``ps``'s
   start time, seconds) makes sure a pid the system has given to another process since
   is never killed.

It is long because it carries both halves of both mechanisms: the ``/proc`` and ``ps``
readers and the kill decision, and the spawn with its gate.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

import anyio
import msgspec

from shepherd.actors.executors import child, forker

__all__ = [
    "ProcInfo",
    "ProcessId",
    "ProcessRegistry",
    "clock_id",
    "decide",
    "end_group",
    "identify",
    "kill_group",
    "parse_ps",
    "parse_stat",
    "process_table",
    "spawn_group",
]

log = logging.getLogger("shepherd.procs")

# Waits for one line on stdin (the gate), then runs the command in the same shell (same
# pid, same group, same start time) with stdin on /dev/null and no positional
# parameters: ``eval`` instead of a second exec of the shell saves one exec per run.
# EOF instead of a line: the runtime died before the group was recorded, so the command
# never starts. "$2", when given, is the runtime's pid: a shell whose parent is another
# process now (the runtime died before ``setpriv`` armed the parent-death signal)
# exits instead.
_GATE = (
    'read -r _g || exit 125; [ -z "$2" ] || [ "$PPID" = "$2" ] || exit 125; '
    'unset _g; exec </dev/null; eval "set --; $1"'
)
_DEAD = frozenset("ZXx")  # zombie / dead: does no work, only waits to be reaped
_PROCFS = sys.platform.startswith("linux") and Path("/proc/self/stat").exists()


class ProcessId(msgspec.Struct, frozen=True):
    """What a run records to find its process group again."""

    pgid: int
    start: int  # the leader's start time, in the unit ``clock`` names
    clock: str  # "linux:<boot id>" (clock ticks since that boot) or "ps" (epoch seconds)


class ProcInfo(NamedTuple):
    """One process as the system lists it."""

    pid: int
    pgrp: int
    sid: int | None  # None where the listing has no session id (``ps``)
    start: int
    state: str


class ProcessRegistry(Protocol):
    """Where a spawned group is recorded (the run's ``Host`` is one)."""

    async def record_process(self, run_id: int, proc: ProcessId) -> None:
        """Store ``proc`` on run ``run_id``; returns once crash recovery would find it."""
        ...


# -- the decision (pure) ---------------------------------------------------------------


def decide(rec: ProcessId, table: Sequence[ProcInfo], clock: str) -> Literal["kill", "gone"]:
    """Whether the group ``rec`` still has a live process of its own in ``table``.

    The kernel does not hand out a number while it is still a live group's id, so a live
    process in group ``rec.pgid`` started no earlier than the leader is one of ours —
    unless the number now names another process (the leader's pid with another start
    time: the group died and the pid was reused), or the table is from another boot.
    """
    if rec.clock != clock:
        return "gone"  # another boot (or another way of counting): all of it is gone
    leader = next((p for p in table if p.pid == rec.pgid), None)
    if leader is not None and (leader.start != rec.start or leader.pgrp != rec.pgid):
        return "gone"  # the pid is another process now: never kill it
    for p in table:
        if (
            p.pgrp == rec.pgid
            and p.state not in _DEAD
            and p.start >= rec.start
            and p.sid in (None, rec.pgid)
        ):
            return "kill"
    return "gone"


# -- reading the system's process table ------------------------------------------------


def parse_stat(text: str) -> ProcInfo:
    """One ``/proc/<pid>/stat`` line. The command name (field 2) may hold spaces and
    parentheses, so the fields are counted from its last ``)``."""
    head, sep, rest = text.rpartition(")")
    if not sep:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    fields = rest.split()  # fields[0] is field 3 (state); field n is fields[n - 3]
    return ProcInfo(
        pid=int(head.split("(", 1)[0]),
        pgrp=int(fields[2]),
        sid=int(fields[3]),
        start=int(fields[19]),
        state=fields[0],
    )


def parse_ps(text: str) -> list[ProcInfo]:
    """Lines of ``ps -o pid= -o pgid= -o stat= -o lstart=`` (``LC_ALL=C``)."""
    out: list[ProcInfo] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        started = time.strptime(" ".join(parts[3:8]), "%a %b %d %H:%M:%S %Y")
        out.append(
            ProcInfo(int(parts[0]), int(parts[1]), None, int(time.mktime(started)), parts[2][0])
        )
    return out


@cache
def clock_id() -> str:
    """What start times count in on this system (``ProcessId.clock``)."""
    if not _PROCFS:
        return "ps"
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    return f"linux:{boot}"


_PS = ["ps", "-o", "pid=", "-o", "pgid=", "-o", "stat=", "-o", "lstart="]


def _ps(*args: str) -> list[ProcInfo]:
    env = {**os.environ, "LC_ALL": "C"}
    done = subprocess.run([*_PS, *args], capture_output=True, text=True, env=env, timeout=30)
    return parse_ps(done.stdout)


def process_table() -> list[ProcInfo]:
    """Every process the system lists now (blocking: call it from a worker thread)."""
    if not _PROCFS:
        return _ps("-A")
    out: list[ProcInfo] = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                out.append(parse_stat(Path(f"/proc/{name}/stat").read_text()))
            except (OSError, ValueError, IndexError):
                continue  # it ended while we looked
    return out


def _read_stat(pid: int) -> str:
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)  # procfs: no disk, never blocks
    try:
        return os.read(fd, 4096).decode("utf-8", "replace")
    finally:
        os.close(fd)


async def identify(pid: int) -> ProcessId | None:
    """The ``ProcessId`` of the group led by ``pid`` (None if it is already gone)."""
    if _PROCFS:
        try:
            info = parse_stat(_read_stat(pid))
        except (OSError, ValueError, IndexError):
            return None
    else:
        found = await anyio.to_thread.run_sync(_ps, "-p", str(pid))
        if not found:
            return None
        info = found[0]
    return ProcessId(pgid=pid, start=info.start, clock=clock_id())


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # gone already (PermissionError: only foreign processes were left)


# -- spawning --------------------------------------------------------------------------

_environ: tuple[dict[bytes, bytes], dict[str, str]] | None = None


def environ() -> dict[str, str]:
    """A fresh copy of this process's environment as it is now. Copying ``os.environ``
    decodes every name and value in Python (~40 µs); this compares its bytes (in C)
    with the last copy's and copies that again when nothing changed."""
    global _environ
    data: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)
    if data is None:  # not CPython's POSIX mapping: copy it the slow way
        return dict(os.environ)
    if _environ is None or _environ[0] != data:
        _environ = (dict(data), dict(os.environ))
    return dict(_environ[1])


def _argv(shell: str, command: str) -> tuple[list[str], Callable[[], None] | None]:
    """The child's argv and ``preexec_fn`` (``child.pdeathsig``) when the runtime starts
    it itself (no fork server)."""
    prefix, preexec = child.pdeathsig()
    argv = [*prefix, shell, "-c", _GATE, shell, command]
    return ([*argv, str(os.getpid())] if prefix else argv), preexec


async def _start(
    shell: str, command: str, env: Mapping[str, str] | None, cwd: str | None
) -> child.Child:
    """Through the runtime's fork server where there is one (it kills the group with the
    runtime: no parent-death signal, so no runtime pid for the gate), else
    ``child.start``."""
    server = forker.CURRENT.get()
    if server is not None:
        try:
            return await server.start([shell, "-c", _GATE, shell, command], env=env, cwd=cwd)
        except forker.TooBig:
            pass  # started here instead (an exec that large may well be refused anyway)
        except forker.ForkServerError as exc:
            log.warning("%s; this command is started by the runtime itself", exc)
    argv, preexec = _argv(shell, command)
    return await child.start(argv, env=env, cwd=cwd, preexec_fn=preexec)


async def spawn_group(
    shell: str,
    command: str,
    *,
    run_id: int,
    registry: ProcessRegistry | None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> child.Child:
    """Start ``shell -c command`` as the leader of a new process group, stdout and
    stderr piped, stdin on /dev/null; with a ``registry``, the command starts only once
    its ``ProcessId`` is committed. A failure or cancellation before that kills it."""
    proc = await _start(shell, command, env, cwd)
    try:
        if registry is not None:
            ident = await identify(proc.pid)
            if ident is not None:
                await registry.record_process(run_id, ident)
        proc.open_gate(b"go\n")
    except BaseException:
        await end_group(proc)
        raise
    return proc


async def end_group(proc: child.Child) -> None:
    """Kill the whole group unless its leader has exited, and wait for the leader
    (shielded: a cancelled run still reaps what it started)."""
    if proc.returncode is None:
        kill_group(proc.pid)
    with anyio.CancelScope(shield=True):
        await proc.wait()
