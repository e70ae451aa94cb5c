"""``[gateway]``, the agent gateway's configuration (``actors.executors.gateway``), apart
from the executors so that loading the configuration (every CLI command) imports
neither the gateway's failure classes nor httpx."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import msgspec

from shepherd.store.bounds import DAY, HOUR, Range, check_bounds, check_http_url
from shepherd.store.durations import Seconds
from shepherd.store.errors import ConfigError

if TYPE_CHECKING:  # imported where used: a config or a CLI command need not load httpx
    import httpx

    from shepherd.store.models import JobSpec

__all__ = ["GatewayConfig", "require_gateway"]

_TIMEOUT = Range(0.001, HOUR, "s")


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[gateway]`` in the config file."""

    url: str
    token: str = ""  # sent as ``Authorization: Bearer <token>``
    token_env: str = ""  # or: the name of an environment variable holding it
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    model_prefix: str = "openclaw"  # model = "<prefix>:<agent>" unless the job sets one
    health_path: str = "/health"
    chat_path: str = "/v1/chat/completions"
    event_path: str = "/v1/system-event"  # system events into the main session
    delivery_path: str = "/v1/system-event"  # the "gateway" delivery sink
    connect_timeout: Annotated[Seconds, _TIMEOUT] = Seconds(5.0)
    health_timeout: Annotated[Seconds, _TIMEOUT] = Seconds(5.0)
    write_timeout: Annotated[Seconds, _TIMEOUT] = Seconds(30.0)
    # how long a dispatch waits when the gateway is down
    defer: Annotated[Seconds, Range(0.001, DAY, "s")] = Seconds(60.0)
    max_connections: Annotated[int, Range(1, 10_000)] = 256

    def __post_init__(self) -> None:
        check_bounds(self, prefix="gateway.")
        check_http_url(self.url, field="gateway.url")
        for name in ("health_path", "chat_path", "event_path", "delivery_path"):
            if not getattr(self, name).startswith("/"):
                raise ConfigError("must start with '/'", field=f"gateway.{name}")

    def endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path

    def auth_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        token = self.token or (os.environ.get(self.token_env, "") if self.token_env else "")
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def timeout(self, *, read: float | None = None) -> httpx.Timeout:
        """Connect / write bounded; read unbounded by default: the run actor's absolute
        and idle deadlines cancel a turn, so a slow but streaming agent is not cut off."""
        import httpx

        return httpx.Timeout(
            connect=float(self.connect_timeout),
            read=read,
            write=float(self.write_timeout),
            pool=None,
        )


def require_gateway(cfg: GatewayConfig | None, spec: JobSpec) -> GatewayConfig:
    """Reject a job of a gateway executor when the runtime has no ``[gateway]``."""
    if cfg is None:
        raise ConfigError(f"{spec.executor} job needs [gateway] url in config", field="executor")
    return cfg
