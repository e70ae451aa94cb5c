"""A runtime serving its HTTP API on a real uvicorn bound to 127.0.0.1 port 0, and
httpx clients for it, for the tests of the API, the workers and the dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec

from shepherd import Config, Runtime
from shepherd.runtime.http.config import HttpConfig, TokenConfig

__all__ = ["ADMIN", "AGENT", "READ", "Served", "auth", "serve", "standard_tokens"]

ADMIN = "admin-secret-token"
READ = "read-secret-token"
AGENT = "agent-a1-secret-token"


def standard_tokens() -> list[TokenConfig]:
    """An admin, a read-only and an agent token (agent ``a1``)."""
    return [
        TokenConfig(name="admin", scope="admin", token=ADMIN),
        TokenConfig(name="viewer", scope="read", token=READ),
        TokenConfig(name="a1", scope="agent", agent="a1", token=AGENT),
    ]


def auth(token: str, agent: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if agent is not None:
        headers["X-Agent-ID"] = agent
    return headers


class Served:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        addr = rt.http_address
        assert addr is not None
        self.url = f"http://{addr[0]}:{addr[1]}"

    def client(
        self, token: str | None = ADMIN, agent: str | None = None, **kw: Any
    ) -> httpx.AsyncClient:
        headers = auth(token, agent) if token is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0, **kw)


@asynccontextmanager
async def serve(
    db_path: str, *, http: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[Served]:
    """``Runtime.open`` with ``[http]`` on 127.0.0.1:0 and the standard tokens (override
    any ``HttpConfig`` field through ``http``); yields the runtime and its base URL."""
    open_kw: dict[str, Any] = config.pop("open", {})
    fields: dict[str, Any] = {"listen": "127.0.0.1:0", "tokens": standard_tokens()}
    fields.update(http or {})
    cfg = Config(database=db_path, http=HttpConfig(**fields), **config)
    async with Runtime.open(cfg, **open_kw) as rt:
        yield Served(rt)


def decode(resp: httpx.Response, type_: Any = Any) -> Any:
    return msgspec.json.decode(resp.content, type=type_)
