"""Talking to an OpenClaw-style agent gateway over HTTP: config, client, failure classes.

Not an actor: a frozen config and one shared ``httpx.AsyncClient`` (connection pool)
used by the ``agent`` and ``event`` executors and by the router's webhook / gateway
sinks. The client is created lazily inside the running event loop and closed by its
owner (the ``Runtime``) with :meth:`HttpClient.aclose`.

Failure classes (what the executors do with them, DESIGN.md D11):

- the gateway is *down* (connection refused, connect timeout, HTTP 502 / 503 / 504,
  health probe failing, "gateway is draining"): raise ``Deferred`` — the dispatch is
  requeued without spending an attempt and the executor's breaker counts it;
- the gateway *failed this request* (HTTP 500 and other 5xx, a broken stream): an
  error run with ``details["gateway_failure"] = True`` (retried, counted by the breaker);
- the *request* is wrong (4xx, non-JSON, malformed reply): an error run with a clear
  message, retried per the job's policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from shepherd.actors.executors.gateway_config import GatewayConfig, require_gateway  # re-exported
from shepherd.actors.executors.sentinels import is_drain_error
from shepherd.store.errors import Deferred

if TYPE_CHECKING:  # imported where used: a config or a CLI command need not load httpx
    import httpx

    from shepherd.actors.executors.base import ExecResult

__all__ = [
    "AGENT_HEADER",
    "AUTH_PROFILE_HEADER",
    "DOWN_STATUSES",
    "SESSION_HEADER",
    "GatewayConfig",
    "HttpClient",
    "failed_response",
    "gateway_down",
    "http_error_text",
    "require_gateway",
    "transport_failure",
]

AGENT_HEADER = "x-openclaw-agent-id"
SESSION_HEADER = "x-openclaw-session-key"
AUTH_PROFILE_HEADER = "x-openclaw-auth-profile"

#: Statuses that mean "the gateway (or its proxy) is not serving": defer, do not fail.
DOWN_STATUSES = frozenset({502, 503, 504})


class HttpClient:
    """One lazily created ``httpx.AsyncClient`` shared by everything that speaks HTTP."""

    def __init__(self, *, max_connections: int = 256) -> None:
        self._max = max_connections
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            import httpx

            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=self._max, max_keepalive_connections=self._max),
                timeout=httpx.Timeout(10.0),
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def __repr__(self) -> str:
        state = "open" if self._client is not None and not self._client.is_closed else "idle"
        return f"<HttpClient {state} max={self._max}>"


def gateway_down(cfg: GatewayConfig, what: str) -> Deferred:
    """The exception an executor raises when the gateway cannot be reached."""
    return Deferred(float(cfg.defer), f"Gateway unavailable ({what})")


def http_error_text(response: httpx.Response, body: bytes) -> str:
    """A short, readable reason from an error response (OpenAI-style JSON or raw text)."""
    detail = ""
    try:
        data: Any = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            detail = str(err.get("message") or err.get("type") or "")
        elif err:
            detail = str(err)
        elif data.get("message"):
            detail = str(data["message"])
    if not detail:
        detail = body[:200].decode("utf-8", errors="replace").strip()
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")


def failed_response(
    cfg: GatewayConfig, what: str, response: httpx.Response, body: bytes
) -> ExecResult:
    """The run result for an error response; raises ``Deferred`` when the gateway is down
    or draining (502 / 503 / 504, "gateway is draining")."""
    from shepherd.actors.executors.base import ExecResult  # not at import: see above

    text = http_error_text(response, body)
    status = response.status_code
    if status in DOWN_STATUSES or is_drain_error(text):
        raise gateway_down(cfg, text)
    if status == 429:
        return ExecResult(
            ok=False,
            error=f"gateway rate-limited the {what} ({text})",
            retry_after=_retry_after(response),
        )
    if status < 500:
        return ExecResult(ok=False, error=f"gateway rejected the {what} ({text})")
    return ExecResult(
        ok=False, error=f"gateway failed the {what} ({text})", details={"gateway_failure": True}
    )


def transport_failure(cfg: GatewayConfig, what: str, exc: httpx.TransportError) -> ExecResult:
    """Connection refused / connect timeout → ``Deferred``; a connection that broke
    while the gateway was answering → an error run counted as a gateway failure."""
    import httpx

    from shepherd.actors.executors.base import ExecResult

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        raise gateway_down(cfg, f"{type(exc).__name__}: {exc}".rstrip(": "))
    return ExecResult(
        ok=False,
        error=f"gateway connection failed during the {what} ({type(exc).__name__}: {exc})",
        details={"gateway_failure": True},
    )


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
