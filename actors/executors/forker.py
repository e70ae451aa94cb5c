"""The runtime's side of the fork server (``fork_server.py``): ``ForkServer.start`` a
command through it, get a ``child.Child`` back.

Each runtime sets one ``ForkServer`` as ``CURRENT`` for its tree (``serving``); the
process behind it starts at the first spawn (about 20 ms, once) and ends with
``close``, once the tree's runs are over. A server that dies is started again at the
next spawn; the runtime kills the groups it had, and their ``wait`` returns
``-SIGKILL``. Where nothing set ``CURRENT`` (an executor
used on its own), ``procs`` starts commands through ``child.start``.

Used on Linux (``SOCK_SEQPACKET`` Unix sockets) where ``sys.executable`` is set, unless
``SHEPHERD_FORK_SERVER=0``. It is long because it is the client half of a small wire
protocol (request, reply, exit report, the server's loss) and reads a child's pipes
straight from their descriptors (``_Pipe``: no transport, no protocol object).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import anyio
import msgspec

from shepherd.actors.executors.child import Child
from shepherd.store.activity import THREAD_WORK

__all__ = ["CURRENT", "ForkServer", "ForkServerError", "TooBig", "available", "serving"]

log = logging.getLogger("shepherd.fork")

_SERVER = Path(__file__).with_name("fork_server.py")
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


@functools.cache
def available() -> bool:
    """Whether commands can go through a fork server here (Linux, ``sys.executable``
    set, ``SHEPHERD_FORK_SERVER`` is not ``0``)."""
    return (
        os.environ.get("SHEPHERD_FORK_SERVER", "1") != "0"
        and sys.platform.startswith("linux")
        and bool(sys.executable)
    )


class ForkServerError(OSError):
    """The fork server did not start, or exited before it answered (the command, if it
    was started, never passes its gate: ``procs`` starts it again itself)."""


class TooBig(OSError):
    """A request larger than the socket takes (``procs`` starts that one itself)."""


_BUFFER = 4 * 1024 * 1024  # each end's socket buffer (the system may cap it lower)


class _Server:
    """One running fork server and the requests and children it has in hand."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            for end in (mine, theirs):
                end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
                end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_SERVER), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True,
            )  # fmt: skip
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        mine.setblocking(False)
        self.sock = mine
        self.loop = loop
        self.next_id = 0
        # request id -> (its future, the runtime's ends of the child's three pipes)
        self.replies: dict[int, tuple[asyncio.Future[_ServerChild], tuple[int, int, int]]] = {}
        self.children: dict[int, _ServerChild] = {}
        self.gone = False
        loop.add_reader(mine.fileno(), self._readable)

    def _readable(self) -> None:
        while not self.gone:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            msg = _decode(data)
            if "exit" in msg:
                child = self.children.pop(msg["exit"], None)
                if child is not None:
                    child._exited(int(msg["code"]))
                continue
            entry = self.replies.pop(msg["id"], None)
            if entry is None:
                continue
            THREAD_WORK.end()
            fut, ours = entry
            if "error" in msg:
                _close(ours)
                fut.set_exception(OSError(int(msg.get("errno") or 0) or None, msg["error"]))
                continue
            # registered here, before any later report of its exit is read
            child = self.children[int(msg["pid"])] = _ServerChild(self, int(msg["pid"]), *ours)
            fut.set_result(child)

    def _lost(self) -> None:
        """The server is gone (closed by ``close``, or it died): end what it started."""
        if self.gone:
            return
        self.gone = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for fut, ours in self.replies.values():
            THREAD_WORK.end()
            _close(ours)
            fut.set_exception(ForkServerError("the fork server exited"))
        self.replies.clear()
        if self.children:
            log.warning("the fork server exited with %d commands running: killed",
                        len(self.children))  # fmt: skip
        for child in self.children.values():
            child._abandon()  # the server cannot any more: its groups die here
            child._exited(-signal.SIGKILL)
        self.children.clear()
        _reap(self.proc)

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None
    ) -> _ServerChild:
        request = _encode([self.next_id + 1, argv, env, cwd])
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        ours, theirs = (stdin_w, stdout_r, stderr_r), (stdin_r, stdout_w, stderr_w)
        self.next_id += 1
        fut: asyncio.Future[_ServerChild] = self.loop.create_future()
        try:
            while True:
                try:
                    socket.send_fds(self.sock, [request], list(theirs))
                    break
                except BlockingIOError:
                    await anyio.wait_writable(self.sock)
        except BaseException as exc:
            _close((*ours, *theirs))
            if isinstance(exc, OSError) and exc.errno == errno.EMSGSIZE:
                raise TooBig(exc.errno, "the request is larger than the socket takes") from None
            raise
        _close(theirs)
        self.replies[self.next_id] = (fut, ours)
        THREAD_WORK.begin()  # a fake clock waits for the answer, as for store work
        return await fut

    def close(self) -> None:
        """Close the socket: the server kills what is left of its groups and exits."""
        self._lost()


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


class _Pipe:
    """The read end of a child's stdout or stderr, read straight from its descriptor: one
    ``os.read`` while data waits, else one readiness wait (no transport, no protocol)."""

    __slots__ = ("_fd", "_loop", "_ready")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        os.set_blocking(fd, False)
        self._loop = loop
        self._fd = fd
        self._ready: asyncio.Future[None] | None = None

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end (then the descriptor is closed)."""
        while self._fd >= 0:
            try:
                data = os.read(self._fd, n)
            except BlockingIOError:
                ready = self._ready = self._loop.create_future()
                self._loop.add_reader(self._fd, _set, ready)
                try:
                    await ready
                finally:
                    self._ready = None
                    if self._fd >= 0:
                        self._loop.remove_reader(self._fd)
                continue
            if not data:
                self.close()
            return data
        return b""

    def close(self) -> None:
        """Close it; a ``read`` waiting on it returns ``b""``."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            if self._ready is not None:
                _set(self._ready)


def _set(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _ServerChild:
    """A command the fork server started; its exit comes back as a report."""

    __slots__ = ("_done", "_gate", "_server", "pid", "returncode", "stderr", "stdout")

    def __init__(self, server: _Server, pid: int, gate: int, out: int, err: int) -> None:
        self._server = server
        self.pid = pid
        self._gate: int | None = gate
        self._done: asyncio.Future[int] = server.loop.create_future()
        self.returncode: int | None = None
        self.stdout = _Pipe(server.loop, out)
        self.stderr = _Pipe(server.loop, err)

    def _exited(self, code: int) -> None:
        if not self._done.done():
            self._done.set_result(code)

    def open_gate(self, line: bytes) -> None:
        if self._gate is None:
            return
        try:
            os.write(self._gate, line)  # a few bytes into an empty pipe: never blocks
        except (BrokenPipeError, ConnectionResetError):
            pass  # it is gone already: its exit status says why
        finally:
            self._close_gate()

    def _close_gate(self) -> None:
        if self._gate is not None:
            os.close(self._gate)
            self._gate = None

    async def wait(self) -> int:
        if self.returncode is None:
            self.returncode = await asyncio.shield(self._done)
            self._close_gate()
            self.stdout.close()  # read to the end already, unless the group lives on
            self.stderr.close()
        return self.returncode

    def _abandon(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._close_gate()
        self.stdout.close()
        self.stderr.close()

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode}>"


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """The server has closed its end or is about to: reap it without blocking the loop
    for long (it exits at once; ``Popen.__del__`` reaps a straggler later)."""
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.kill()


class ForkServer:
    """A runtime's fork server: started at the first ``start``, ended by ``close``."""

    def __init__(self) -> None:
        self._server: _Server | None = None

    async def start(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None, cwd: str | None
    ) -> Child:
        """Start ``argv`` in a new session, stdin, stdout and stderr piped."""
        loop = asyncio.get_running_loop()
        server = self._server
        if server is None or server.gone or server.loop is not loop:
            if server is not None:
                server.close()  # another loop's (a runtime opened again elsewhere)
            try:
                server = self._server = _Server(loop)
            except OSError as exc:
                raise ForkServerError(exc.errno, f"the fork server did not start: {exc}") from exc
        with anyio.CancelScope(shield=True):  # a spawn in flight is seen through
            child = await server.spawn(argv, env, cwd)
        return child

    @property
    def pid(self) -> int | None:
        """The server process's pid while it runs."""
        server = self._server
        return None if server is None or server.gone else server.proc.pid

    def close(self) -> None:
        """End the server: it kills what is left of its groups and exits."""
        if self._server is not None:
            self._server.close()
            self._server = None


CURRENT: ContextVar[ForkServer | None] = ContextVar("shepherd_fork_server", default=None)


@contextmanager
def serving() -> Iterator[None]:
    """A fork server as ``CURRENT`` for the tasks started in the block (where
    ``available``), ended when the block is: after the tree, every run has ended its
    group by then."""
    server = ForkServer() if available() else None
    token = CURRENT.set(server)
    try:
        yield
    finally:
        CURRENT.reset(token)
        if server is not None:
            server.close()
