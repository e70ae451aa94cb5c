"""The http actor: uvicorn serving an ASGI app inside the runtime's own event loop.

Role: binds ``host:port`` (port 0 picks a free one; ``address`` tells which) and serves
the app the runtime built (``runtime.http.build_app``). uvicorn's own signal handling
is off: the daemon owns SIGTERM / SIGINT and stops the tree, whose stop hook
(``stop``) asks uvicorn to exit: it stops accepting, lets in-flight requests finish
within ``grace`` seconds, then closes what is left. A crash (an exception out of
``serve``) is the supervisor's to restart: the listening socket is bound once, before
the tree starts (``bind``: a taken port fails the start with a clear error instead of
a restart loop), and a restart serves the same socket.

Inbox: none. Sends: nothing (requests reach the runtime's API directly). Restart
type: permanent.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus

from shepherd.store.errors import ConfigError

__all__ = ["HttpServer"]

log = logging.getLogger("shepherd.http")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon handles signals; the supervisor's stop hook ends the server


class HttpServer:
    def __init__(self, app: Any, host: str, port: int, *, grace: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.grace = grace
        self.address: tuple[str, int] | None = None
        self._server: _Server | None = None
        self._sock: socket.socket | None = None
        self._stopping = False
        self.starts = 0

    def bind(self) -> None:
        """Bind and listen now (raises ``ConfigError`` naming ``http.listen``)."""
        if self._sock is None:
            self._sock = self._bind()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it Nagle and delayed ACKs hold each answer ~40 ms
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}", field="http.listen"
            ) from None
        sock.listen(2048)
        sock.setblocking(False)
        return sock

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.bind()
        sock = self._sock
        assert sock is not None
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        self._stopping = False
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=max(1, round(self.grace)),
            timeout_keep_alive=30,
        )
        server = self._server = _Server(config)
        self.starts += 1
        log.info("http.listening address=%s:%d", host, port)
        done = anyio.Event()

        async def serve() -> None:
            try:
                await server.serve([sock])
            finally:
                done.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve)
                while not server.started and not done.is_set():
                    await anyio.sleep(0.005)  # uvicorn has no started event to await
                task_status.started()
        finally:
            self._server = None
            if self._stopping:
                self.close()

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True

    def statistics(self) -> dict[str, Any]:
        srv = self._server
        return {
            "address": f"{self.address[0]}:{self.address[1]}" if self.address else None,
            "connections": len(srv.server_state.connections) if srv else 0,
            "requests": srv.server_state.total_requests if srv else 0,
            "starts": self.starts,
        }
