"""Embedding in a Starlette app with ``shepherd.runtime.asgi.lifespan``, served by a real
uvicorn on 127.0.0.1 (a socket bound to port 0), requested with httpx.

- a request handler enqueues a job and waits for it, through ``runtime_of(request)``;
- a payload that does not fit the target's type is refused in the handler (422 here);
- the server's shutdown closes the runtime: the lock is released and the app's own
  lifespan (``inner``) ran inside, with the runtime open.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shepherd import Config, ConfigError, JobSpec, Targets
from shepherd.runtime._cli_store import daemon_pid
from shepherd.runtime.asgi import lifespan, runtime_of
from shepherd.runtime.cli import main
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


class Report(msgspec.Struct):
    to: str


targets = Targets()


@targets.task("report", payload=Report)
async def report(ctx: Any) -> dict[str, str]:
    return {"sent_to": ctx.payload.to}


async def enqueue_and_wait(request: Request) -> JSONResponse:
    rt = runtime_of(request)
    try:
        dispatch_id = await rt.enqueue("report", await request.json())
    except ConfigError as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    final = await rt.wait(dispatch_id, timeout=10)
    return JSONResponse({"id": dispatch_id, "status": final.status, "result": final.result})


async def test_a_starlette_handler_enqueues_and_waits(db_path: str) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append(f"inner start, runtime {app.state.shepherd!r}")
        yield
        events.append("inner stop")

    app = Starlette(
        routes=[Route("/report", enqueue_and_wait, methods=["POST"])],
        lifespan=lifespan(
            Config(database=db_path, shutdown_grace=1),
            targets=targets,
            jobs=[JobSpec(name="report", target="report")],
            inner=app_lifespan,
        ),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        await eventually(lambda: server.started, what="uvicorn to start")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            ok = await client.post("/report", json={"to": "ops"})
            bad = await client.post("/report", json={"to": 5})
        server.should_exit = True
    sock.close()
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "done" and ok.json()["result"] == {"sent_to": "ops"}
    assert bad.status_code == 422 and bad.json()["error"] == "payload.to: Expected str, got int"
    assert events[0].startswith("inner start, runtime <Runtime") and events[1] == "inner stop"
    assert not hasattr(app.state, "shepherd")
    # the runtime is closed: its lock is released, and the dispatch is in the file
    assert daemon_pid(db_path) is None
    argv = ["--database", db_path, "runs", "list"]
    assert await anyio.to_thread.run_sync(main, argv) == 0


async def test_runtime_of_without_the_lifespan_says_what_to_do() -> None:
    app = Starlette()
    request = Request({"type": "http", "app": app})
    with pytest.raises(RuntimeError, match="lifespan"):
        runtime_of(request)
