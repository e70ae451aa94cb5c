"""A real HTTP stand-in for an OpenClaw gateway, for executor and delivery tests.

A Starlette app served by uvicorn on 127.0.0.1 (a free port) in a background thread
with its own event loop, so sync tests and anyio tests can both talk to it over real
sockets. Every request is recorded (thread-safe) before it is answered.

Endpoints
    GET  /health                200, or 503 when ``healthy=False``
    POST /v1/chat/completions   OpenAI-compatible reply; SSE when the body has
                                ``"stream": true``; behaviour set by the mode
    POST /v1/system-event       recorded, 202
    POST /webhook               500 for the first ``webhook_fail_first`` calls, then 200

Modes (``set_mode(**fields)``, checked in this order for chat completions)
    hang=True          never answer (until the stand-in stops)
    delay=s            wait ``s`` seconds, then answer normally
    raw_body="..."     answer with a non-JSON body (text/html) and ``status``
    status=5xx/4xx     answer with an OpenAI-style JSON error and that status
    trickle=(x, n)     stream ``n`` chunks, one every ``x`` seconds (SSE when the
                       request streams, else the JSON body dribbled out in n pieces)
    reply="text"       the assistant content (or a callable ``(request_json) -> str``);
                       ``queue_replies(...)`` serves given replies first, in order
    down=True          stop listening: connections are refused on the same port;
                       ``down=False`` listens again on that port

Usage::

    with run_standin(reply="HEARTBEAT_OK") as gw:
        httpx.post(gw.url + "/v1/chat/completions", json={...})
        assert gw.requests[0].path == "/v1/chat/completions"
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["Mode", "RecordedRequest", "StandIn", "run_standin"]

Reply = str | Callable[[Any], str]


class RecordedRequest(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any  # decoded body, or None when the body is empty / not JSON
    body: bytes
    at: float  # time.monotonic() when it arrived


@dataclasses.dataclass(frozen=True)
class Mode:
    reply: Reply = "ok"
    status: int = 200
    raw_body: str | None = None
    hang: bool = False
    delay: float = 0.0
    trickle: tuple[float, int] | None = None
    healthy: bool = True
    webhook_fail_first: int = 0


def _completion(model: str, content: str) -> dict[str, Any]:
    words = len(content.split())
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1},
    }


def _sse_chunk(model: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + msgspec.json.encode(chunk) + b"\n\n"


def _pieces(text: str) -> list[str]:
    """Split into word-ish chunks that concatenate back to ``text``."""
    parts: list[str] = []
    for i, word in enumerate(text.split(" ")):
        parts.append(word if i == 0 else " " + word)
    return [p for p in parts if p] or [""]


class StandIn:
    """The running stand-in. Create with :func:`run_standin`."""

    def __init__(self, mode: Mode | None = None) -> None:
        self._lock = threading.Lock()
        self._mode = mode or Mode()
        self._requests: list[RecordedRequest] = []
        self._replies: deque[str] = deque()
        self._webhook_calls = 0
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/system-event", self._system_event, methods=["POST"]),
                Route("/webhook", self._webhook, methods=["POST"]),
            ]
        )

    # -- control (any thread) -----------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def mode(self) -> Mode:
        with self._lock:
            return self._mode

    @property
    def is_up(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set_mode(self, *, down: bool | None = None, **changes: Any) -> None:
        """Change behaviour for the next requests; unknown fields raise TypeError.

        Setting ``webhook_fail_first`` also restarts the webhook failure count.
        """
        with self._lock:
            self._mode = dataclasses.replace(self._mode, **changes)
            if "webhook_fail_first" in changes:
                self._webhook_calls = 0
        if down is True and self.is_up:
            self.go_down()
        elif down is False and not self.is_up:
            self.come_up()

    def queue_replies(self, *replies: str) -> None:
        """Serve these assistant replies to the next chat requests, then ``mode.reply``."""
        with self._lock:
            self._replies.extend(replies)

    def clear(self) -> None:
        """Forget recorded requests, queued replies and the webhook count."""
        with self._lock:
            self._requests.clear()
            self._replies.clear()
            self._webhook_calls = 0

    def wait_for_requests(
        self, n: int, *, path: str | None = None, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Poll until ``n`` requests (to ``path``, if given) were received, or raise."""
        deadline = time.monotonic() + timeout
        while True:
            got = [r for r in self.requests if path is None or r.path == path]
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {n} requests to {path or '*'}, got {len(got)}")
            time.sleep(0.005)

    def start(self) -> None:
        self.come_up()

    def come_up(self) -> None:
        """Listen (again) on ``self.port``; the first call picks a free port."""
        if self.is_up:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="gateway-standin", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("gateway stand-in failed to start")
            time.sleep(0.005)
        self._server, self._thread = server, thread

    def go_down(self) -> None:
        """Stop listening (connections are refused) but keep the port for come_up()."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # releases hanging / trickling handlers
        server.should_exit = True
        thread.join(timeout=10.0)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5.0)
        self._server = self._thread = None

    def stop(self) -> None:
        self.go_down()

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<StandIn {self.url} up={self.is_up} requests={len(self.requests)}>"

    # -- handlers (server thread) ------------------------------------------------

    async def _record(self, request: Request) -> tuple[RecordedRequest, Mode]:
        body = await request.body()
        try:
            decoded: Any = msgspec.json.decode(body) if body else None
        except msgspec.DecodeError:
            decoded = None
        rec = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            json=decoded,
            body=body,
            at=time.monotonic(),
        )
        with self._lock:
            self._requests.append(rec)
            return rec, self._mode

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the stand-in is stopping meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                return False
            await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        return not self._stopping.is_set()

    async def _health(self, request: Request) -> Response:
        _, mode = await self._record(request)
        if mode.healthy:
            return JSONResponse({"ok": True})
        return JSONResponse({"ok": False}, status_code=503)

    async def _system_event(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"accepted": True}, status_code=202)

    async def _webhook(self, request: Request) -> Response:
        _, mode = await self._record(request)
        with self._lock:
            self._webhook_calls += 1
            n = self._webhook_calls
        if n <= mode.webhook_fail_first:
            return JSONResponse({"ok": False, "attempt": n}, status_code=500)
        return JSONResponse({"ok": True, "attempt": n})

    def _next_reply(self, mode: Mode, body: Any) -> str:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return mode.reply(body) if callable(mode.reply) else mode.reply

    async def _chat(self, request: Request) -> Response:
        rec, mode = await self._record(request)
        body = rec.json if isinstance(rec.json, dict) else {}
        model = str(body.get("model", "standin"))
        streaming = body.get("stream") is True

        if mode.hang:
            while not self._stopping.is_set():
                await asyncio.sleep(0.02)
            return Response(status_code=503)
        if mode.delay and not await self._pause(mode.delay):
            return Response(status_code=503)
        if mode.raw_body is not None:
            return Response(mode.raw_body, status_code=mode.status, media_type="text/html")
        if mode.status >= 400:
            error = {"message": f"stand-in error {mode.status}", "type": "standin_error"}
            return JSONResponse({"error": error}, status_code=mode.status)

        content = self._next_reply(mode, rec.json)
        if mode.trickle is not None:
            interval, count = mode.trickle
            if streaming:
                pieces = [f"chunk{i} " for i in range(count)]
                return self._sse(model, pieces, interval)
            return StreamingResponse(
                self._dribble(msgspec.json.encode(_completion(model, content)), interval, count),
                media_type="application/json",
            )
        if streaming:
            return self._sse(model, _pieces(content), 0.0)
        return JSONResponse(_completion(model, content), status_code=mode.status)

    def _sse(self, model: str, pieces: list[str], interval: float) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield _sse_chunk(model, {"role": "assistant", "content": ""})
            for piece in pieces:
                if interval and not await self._pause(interval):
                    return
                yield _sse_chunk(model, {"content": piece})
            yield _sse_chunk(model, {}, finish="stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _dribble(self, data: bytes, interval: float, count: int) -> AsyncIterator[bytes]:
        size = max(1, -(-len(data) // max(1, count)))
        for start in range(0, len(data), size):
            if not await self._pause(interval):
                return
            yield data[start : start + size]


@contextmanager
def run_standin(**mode: Any) -> Iterator[StandIn]:
    """Start a stand-in with the given :class:`Mode` fields; stop it on exit."""
    standin = StandIn(Mode(**mode))
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
