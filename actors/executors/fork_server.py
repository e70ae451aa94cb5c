"""The fork server: a small process that starts the runtime's shell and watchdog commands.

Run by path (``python -I -S fork_server.py FD``; the standard library only), one per
runtime, in a session of its own, started by ``actors/executors/forker.py`` at the first
spawn. ``FD`` is its end of a ``SOCK_SEQPACKET`` socket pair: each message is one JSON
request or report.

- **Request** (runtime -> server): ``[id, argv, env, cwd]`` with three file descriptors
  (the child's stdin, stdout and stderr). The server starts ``argv`` as the leader of a
  new session (``subprocess.Popen``: CPython's vfork path, nothing copied) and answers
  ``{"id": id, "pid": pid}``, or ``{"id": id, "error": ..., "errno": n}`` when it could
  not (no such program, no such ``cwd``).
- **Exit report** (server -> runtime): ``{"exit": pid, "code": c}`` once a command it
  started has exited (``c`` as ``Popen.returncode``: ``-signal`` for a signal).
- **The runtime is gone** (end of file on the socket: it closed it, or it died, a
  SIGKILL included): the server kills every process group it started whose leader it
  has not reaped (so the group id is still theirs), and exits. This is how a killed
  runtime's commands die with it: whole groups, at once, not only their leaders.
- **The server is gone** while the runtime lives: the runtime kills those groups itself
  (``forker``). Both gone at once (a kill of both pids): crash recovery kills the
  recorded groups at the next start, as on every platform (``procs``).

Why a server: arming a parent-death signal in each command (between fork and exec)
needs either a ``preexec_fn`` in the runtime (CPython's fork path: the runtime's page
tables are copied) or an extra exec of ``setpriv`` before the command (about 1.2 ms of
CPU per spawn, as much as the command's own exec), and the ``Popen`` call itself holds
the runtime's event loop for ~0.3 ms of CPU and the vfork. Here the spawn costs the
runtime a ``sendmsg`` and a reply, and the server's work runs beside the loop.

It sits out SIGINT, SIGTERM, SIGHUP and SIGQUIT (the runtime decides what happens to
its runs; ``systemctl stop`` signals the whole cgroup) with a handler that does
nothing, never ``SIG_IGN``: an ignored signal would stay ignored in every command,
while a handled one is back to its default after the exec.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
from typing import Any

_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_MAX_MESSAGE = 4 * 1024 * 1024  # argv and env together: Linux caps an exec near 2 MiB


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    sock.send(json.dumps(message).encode())


def _spawn(sock: socket.socket, request: list[Any], fds: list[int],
           live: dict[int, subprocess.Popen[bytes]]) -> None:  # fmt: skip
    ident, argv, env, cwd = request
    try:
        proc = subprocess.Popen(
            argv, stdin=fds[0], stdout=fds[1], stderr=fds[2],
            env=env, cwd=cwd, start_new_session=True, close_fds=True,
        )  # fmt: skip
    except (OSError, ValueError) as exc:  # ValueError: a NUL in argv, env or cwd
        errno = getattr(exc, "errno", None)
        _send(sock, {"id": ident, "error": f"{type(exc).__name__}: {exc}", "errno": errno})
        return
    finally:
        for fd in fds:
            os.close(fd)
    live[proc.pid] = proc
    _send(sock, {"id": ident, "pid": proc.pid})


def _reap(sock: socket.socket, live: dict[int, subprocess.Popen[bytes]]) -> None:
    while live:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        proc = live.pop(pid, None)
        if proc is not None:
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            _send(sock, {"exit": pid, "code": code})


def _end(live: dict[int, subprocess.Popen[bytes]]) -> None:
    for pid in live:  # not reaped: the group id cannot have been given to anyone else
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _nothing(_sig: int, _frame: object) -> None:
    pass


def main(fd: int) -> int:
    for sig in _IGNORED:
        signal.signal(sig, _nothing)
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, _nothing)  # handled, so the wake-up fd hears it
    live: dict[int, subprocess.Popen[bytes]] = {}
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is sock:
                    data, fds, _flags, _addr = socket.recv_fds(
                        sock, _MAX_MESSAGE, 3, socket.MSG_CMSG_CLOEXEC
                    )
                    if not data:
                        return 0
                    if len(fds) != 3:
                        for got in fds:
                            os.close(got)
                        continue  # not a request of ours
                    _spawn(sock, json.loads(data), fds, live)
                else:
                    _drain(wake_r)
            _reap(sock, live)
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        _end(live)


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            return


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
