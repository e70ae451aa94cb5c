"""The http actor: uvicorn in the runtime's loop on a real loopback socket.

- port 0 resolves to a real port; /healthz, /readyz and /openapi.json answer;
- an unknown path is a JSON 404;
- a non-loopback address with no token is refused before anything starts;
- a port already taken is a clear ConfigError naming http.listen;
- the runtime's stop ends the server (the port is free again).
"""

from __future__ import annotations

import socket

import httpx
import pytest

from shepherd import Config, ConfigError, Runtime
from shepherd.runtime.http.config import HttpConfig
from tests.helpers import eventually
from tests.http_helpers import serve

pytestmark = pytest.mark.anyio


async def test_probes_and_json_404(db_path: str) -> None:
    async with serve(db_path) as srv, httpx.AsyncClient(base_url=srv.url) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok", "checks": {}}
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        doc = (await c.get("/openapi.json")).json()
        assert doc["openapi"] == "3.1.0"
        missing = await c.get("/no/such/thing")
        assert missing.status_code == 404
        assert missing.json() == {"error": {"status": 404, "message": "Not Found"}}


async def test_non_loopback_without_token_is_refused(db_path: str) -> None:
    cfg = Config(database=db_path, http=HttpConfig(listen="0.0.0.0:0"))
    with pytest.raises(ConfigError) as err:
        async with Runtime.open(cfg):
            pass
    assert err.value.field == "http.listen"
    assert "needs at least one token" in str(err.value)


async def test_a_taken_port_is_a_clear_error(db_path: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        cfg = Config(database=db_path, http=HttpConfig(listen=f"127.0.0.1:{port}"))
        with pytest.raises(ConfigError) as err:
            async with Runtime.open(cfg):
                pass
        assert err.value.field == "http.listen"
    finally:
        taken.close()


async def test_stop_frees_the_port(db_path: str) -> None:
    async with serve(db_path) as srv:
        url = srv.url
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{url}/healthz")).status_code == 200
    async with httpx.AsyncClient() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"{url}/healthz")


def test_bad_listen_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        HttpConfig(listen="localhost")
    assert err.value.field == "http.listen"


async def test_a_crashed_server_is_restarted_on_the_same_port(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shepherd.actors import http as http_actor

    crashes: list[str] = []
    real = http_actor._Server.main_loop

    async def main_loop(self: http_actor._Server) -> None:
        if not crashes:  # the first server dies under load; its restart serves
            crashes.append("boom")
            raise RuntimeError("boom")
        await real(self)

    monkeypatch.setattr(http_actor._Server, "main_loop", main_loop)
    async with serve(db_path) as srv:
        server = srv.rt._actors["http"]
        await eventually(lambda: server.starts == 2, what="the http actor's restart")
        async with httpx.AsyncClient(base_url=srv.url) as c:
            await eventually(
                lambda: _healthy(c), what="the restarted server to answer on the same port"
            )
        events = [e for e in srv.rt.actor_events if "http" in str(e)]
        assert events, "the crash was recorded as an actor event"


async def _healthy(c: httpx.AsyncClient) -> bool:
    try:
        return (await c.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False
