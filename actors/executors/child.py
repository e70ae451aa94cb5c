"""A child process with piped stdout and stderr, started the fast way: ``start``.

``asyncio.create_subprocess_exec`` on uvloop forks (libuv has no vfork path on Linux),
and a ``preexec_fn`` forces CPython's fork path too; either roughly halves the spawn
rate. Where the system has ``pidfd_open`` (Linux 5.3+), ``start`` calls
``subprocess.Popen`` itself, without a ``preexec_fn``, so CPython uses vfork, and waits
for the exit through the pidfd, on asyncio and uvloop alike. The ``Popen`` call runs in
the event loop's thread, as asyncio's own does: the parent-death signal follows the
thread that forked the child (``procs``), and that thread lives as long as the runtime.
Elsewhere ``start`` falls back to ``asyncio.create_subprocess_exec``.

The caller opens the child's stdin gate with ``open_gate`` (one line, then EOF); stdout
and stderr are ``asyncio.StreamReader``s read to EOF by the caller.

``pdeathsig`` says how a child arms the parent-death signal on Linux: an argv prefix
(``setpriv --pdeathsig KILL``, util-linux 2.33+: keeps the vfork path) or, without
``setpriv``, a ``preexec_fn`` (the fork path).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import anyio

__all__ = ["Child", "Stream", "pdeathsig", "start"]

_PIDFD = hasattr(os, "pidfd_open")


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), resolved at the first spawn, in the parent: never in a
    forked child (nor at import: a runtime that spawns nothing never loads ctypes)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_PR_SET_PDEATHSIG = 1


def _arm_in_child() -> Callable[[], None] | None:
    """A ``preexec_fn`` arming SIGKILL on the parent's death (Linux), else None.

    It runs in the child between fork and exec, after the new session is made (CPython;
    uvloop runs it just before), so it only calls the already-resolved ``prctl`` and
    ``getppid``: no import, no lock, nothing that could wait on another thread."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the runtime died before the signal was armed
            os._exit(125)

    return arm


@functools.cache
def _setpriv() -> str | None:
    """``setpriv`` if it is there and knows ``--pdeathsig`` (probed once, at first use)."""
    import shutil

    found = shutil.which("setpriv") if _prctl() is not None else None
    if found is None:
        return None
    try:
        probe = subprocess.run([found, "--pdeathsig", "KILL", "true"], capture_output=True)
    except OSError:
        return None
    return found if probe.returncode == 0 else None


def pdeathsig() -> tuple[list[str], Callable[[], None] | None]:
    """How a child arms the parent-death signal: ``(argv prefix, preexec_fn)``.

    ``([setpriv, "--pdeathsig", "KILL"], None)`` where ``setpriv`` works, else
    ``([], preexec_fn)`` on Linux and ``([], None)`` elsewhere. With the prefix the
    signal is armed after exec, so the caller must check that the child's parent is
    still this process once the signal is armed (``procs``' gate does)."""
    found = _setpriv()
    if found is not None:
        return [found, "--pdeathsig", "KILL"], None
    return [], _arm_in_child()


class Stream(Protocol):
    """A child's stdout or stderr, read to its end by the caller."""

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end."""
        ...


class Child(Protocol):
    """What ``procs`` and the executors use of a started child."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdout(self) -> Stream | None: ...
    @property
    def stderr(self) -> Stream | None: ...

    async def wait(self) -> int:
        """The exit code (``-signal`` when a signal ended it), once it has exited."""
        ...

    def open_gate(self, line: bytes) -> None:
        """Write ``line`` to the child's stdin and close it (gone already is fine)."""
        ...


class _PidfdChild:
    """A ``Popen`` child reaped through its pidfd (nothing else waits for it)."""

    __slots__ = ("_fd", "_popen", "_transports", "returncode", "stderr", "stdout")

    def __init__(self, popen: subprocess.Popen[bytes], fd: int) -> None:
        self._popen = popen
        self._fd = fd
        self._transports: list[asyncio.BaseTransport] = []
        self.returncode: int | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        readers = []
        for pipe in (self._popen.stdout, self._popen.stderr):
            assert pipe is not None
            reader = asyncio.StreamReader(limit=2**16, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport, _ = await loop.connect_read_pipe(functools.partial(_same, protocol), pipe)
            self._transports.append(transport)
            readers.append(reader)
        self.stdout, self.stderr = readers

    def open_gate(self, line: bytes) -> None:
        gate = self._popen.stdin
        assert gate is not None
        try:
            os.write(gate.fileno(), line)  # a few bytes into an empty pipe: never blocks
        except (BrokenPipeError, ConnectionResetError):
            pass  # it is gone already: its exit status says why
        finally:
            gate.close()

    async def wait(self) -> int:
        if self.returncode is None:
            await anyio.wait_readable(self._fd)  # readable once the child has exited
            try:
                # exited already (the pidfd said so): WNOHANG never waits
                _, status = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222
                code = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped by someone else (a waitpid(-1) watcher)
                code = 255
            self._popen.returncode = self.returncode = code  # Popen.__del__ leaves it be
            os.close(self._fd)
            if self._popen.stdin is not None:
                self._popen.stdin.close()  # the gate, if it was never opened
            for transport in self._transports:
                transport.close()  # the readers saw EOF already unless the group lives on
        return self.returncode

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode}>"


def _same(protocol: asyncio.StreamReaderProtocol) -> asyncio.StreamReaderProtocol:
    return protocol


class _AsyncioChild:
    """The fallback: an ``asyncio.subprocess.Process``."""

    __slots__ = ("_proc",)

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    pid = property(lambda self: self._proc.pid)
    returncode = property(lambda self: self._proc.returncode)
    stdout = property(lambda self: self._proc.stdout)
    stderr = property(lambda self: self._proc.stderr)

    async def wait(self) -> int:
        return await self._proc.wait()

    def open_gate(self, line: bytes) -> None:
        gate = self._proc.stdin
        assert gate is not None
        try:
            gate.write(line)  # a few bytes into an empty pipe: no drain needed
        except (BrokenPipeError, ConnectionResetError):
            pass
        gate.close()


async def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | None,
    preexec_fn: Callable[[], None] | None,
) -> Child:
    """Start ``argv`` in a new session, stdin, stdout and stderr piped."""
    if not _PIDFD:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd, start_new_session=True, preexec_fn=preexec_fn,
        )  # fmt: skip
        return _AsyncioChild(proc)
    # In the loop's thread on purpose (the parent-death signal follows the forking
    # thread); vfork returns once the child has exec'd, as asyncio's own spawn does.
    popen = subprocess.Popen(  # noqa: ASYNC220
        argv,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, start_new_session=True, preexec_fn=preexec_fn,
    )  # fmt: skip
    try:
        child = _PidfdChild(popen, os.pidfd_open(popen.pid))
        with anyio.CancelScope(shield=True):
            await child._connect()
    except BaseException:
        _abandon(popen)
        raise
    return child


def _abandon(popen: subprocess.Popen[bytes]) -> None:
    """Kill and reap a child that could not be set up (it has not passed its gate)."""
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pipe in (popen.stdin, popen.stdout, popen.stderr):
        if pipe is not None:
            pipe.close()
    popen.wait()
