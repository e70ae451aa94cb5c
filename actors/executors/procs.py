"""Process groups of shell and watchdog runs: they die with the runtime, and what a
killed runtime leaves behind is found again and killed at the next start.

A run's command is the leader of a process group of its own (a new session: its pid is
the group id), started by ``spawn_group``. Two mechanisms keep the group from outliving
the runtime that started it:

1. **Parent-death signal (Linux).** Between fork and exec the child arms
   ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills it the moment the runtime
   dies, a SIGKILL of the daemon included. The signal follows the *thread* that forked
   the child, not the process: asyncio and uvloop both fork from the event loop's thread
   (the subprocess transport is created synchronously there), and that thread lives as
   long as the runtime, so the signal fires exactly when the runtime goes. It reaches the
   direct child only: a process the command forks (a pipeline, ``cmd &``) does not
   inherit it, and neither does anything on platforms without it (macOS, the BSDs).
2. **Recorded, and killed at the next start (every POSIX platform).** The command waits
   behind a gate (one line on its stdin) until the run has recorded its group id and the
   leader's start time (``ProcessId``) through the run's host
   (``ctx.host.record_process``), committed; nothing of the command runs before. Crash
   recovery kills a recorded group that is still alive (``decide``) and waits until it
   is gone before it applies the delivery guarantee. The start time (Linux: field 22 of
   ``/proc/<pid>/stat``, clock ticks since the boot named by ``clock``; elsewhere ``ps``'s
   start time, seconds) makes sure a pid the system has given to another process since
   is never killed.
"""

from __future__ import annotations

import asyncio
import ctypes
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

# Waits for one line on stdin (the gate), then becomes the command (same pid, same
# group, same start time) with stdin on /dev/null. EOF instead of a line: the runtime
# died before the group was recorded, so the command never starts.
_GATE = 'read -r go || exit 125; exec "$0" -c "$1" </dev/null'
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
        """Store ``proc`` on run ``run_id``; returns once it is committed."""
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


async def identify(pid: int) -> ProcessId | None:
    """The ``ProcessId`` of the group led by ``pid`` (None if it is already gone)."""
    if _PROCFS:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()  # noqa: ASYNC240 (procfs: no disk)
            info = parse_stat(stat)
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


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_PRCTL = _load_prctl()  # resolved here, never in a forked child
_PR_SET_PDEATHSIG = 1


def _pdeathsig() -> Callable[[], None] | None:
    """A ``preexec_fn`` arming SIGKILL on the parent's death (Linux), else None.

    It runs in the child between fork and exec, after the new session is made (CPython;
    uvloop runs it just before), so it only calls the already-resolved ``prctl`` and
    ``getppid``: no import, no lock, nothing that could wait on another thread."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the runtime died before the signal was armed
            os._exit(125)

    return arm


async def spawn_group(
    shell: str,
    command: str,
    *,
    run_id: int,
    registry: ProcessRegistry | None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> asyncio.subprocess.Process:
    """Start ``shell -c command`` as the leader of a new process group, stdout and
    stderr piped, stdin on /dev/null; with a ``registry``, the command starts only once
    its ``ProcessId`` is committed. A failure or cancellation before that kills it."""
    proc = await asyncio.create_subprocess_exec(
        shell, "-c", _GATE, shell, command,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, start_new_session=True, preexec_fn=_pdeathsig(),
    )  # fmt: skip
    try:
        if registry is not None:
            ident = await identify(proc.pid)
            if ident is not None:
                await registry.record_process(run_id, ident)
        gate = proc.stdin
        assert gate is not None
        try:
            gate.write(b"go\n")
            await gate.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it is gone already: the caller sees its exit status
        gate.close()
    except BaseException:
        await end_group(proc)
        raise
    return proc


async def end_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the whole group unless its leader has exited, and wait for the leader
    (shielded: a cancelled run still reaps what it started)."""
    if proc.returncode is None:
        kill_group(proc.pid)
    with anyio.CancelScope(shield=True):
        await proc.wait()
