"""``[http]`` in the config file: where the API listens, who may call it, and its limits.

Off by default (``listen = ""``). Tokens come from the file (``token``: the secret
itself, ``sha256``: its hex digest, so the file need not hold the secret) or from the
environment (``token_env`` names a variable; ``SHEPHERD_ADMIN_TOKEN`` and
``SHEPHERD_READ_TOKEN`` add an admin and a read-only token when set). Only digests are
kept in memory after start (``runtime.http.auth``). Each token may make ``rate_limit``
requests a minute, ``rate_burst`` of them at once (default: ``rate_limit``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shepherd.store.bounds import DAY, HOUR, Range, check_bounds
from shepherd.store.errors import ConfigError
from shepherd.store.models import Seconds

__all__ = ["VERSION", "HttpConfig", "NatsConfig", "TokenConfig", "parse_listen"]

VERSION = "0.1.0"  # the API's version in /openapi.json

Scope = Literal["admin", "agent", "read"]


class TokenConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One ``[[http.tokens]]`` entry. ``agent`` is required for (and only allowed on)
    scope ``agent``: the ``X-Agent-ID`` such a token must present."""

    name: str
    scope: Scope
    agent: str = ""
    token: str = ""
    token_env: str = ""
    sha256: str = ""


class NatsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[http.nats]``: publish the event stream to NATS (``<prefix>.task.<id>.<event>``)."""

    url: str = "nats://127.0.0.1:4222"
    prefix: str = "swarm"


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    listen: str = ""  # "host:port"; "": no HTTP server (an embedder may still mount the app)
    tokens: list[TokenConfig] = msgspec.field(default_factory=list)
    # requests per minute per token (Dispatch: 120 per agent); 0: unlimited
    rate_limit: Annotated[int, Range(0, 1_000_000)] = 120
    # how many requests a full bucket lets through at once; None: rate_limit (a
    # minute's allowance), so a low limit is not undone by a fixed burst (``burst``)
    rate_burst: Annotated[int, Range(1, 1_000_000)] | None = None
    max_body: Annotated[int, Range(1024, 64 * 1024 * 1024)] = 1024 * 1024  # bytes
    # the longest a claim long-polls (a worker's wait=... is capped here)
    long_poll_max: Annotated[Seconds, Range(0, HOUR, "s")] = Seconds(60.0)
    # how long a dashboard session cookie stays valid
    session_ttl: Annotated[Seconds, Range(60, 30 * DAY, "s")] = Seconds(12 * HOUR)
    ui: bool = True  # serve the dashboard at /ui
    nats: NatsConfig | None = None

    def __post_init__(self) -> None:
        check_bounds(self, prefix="http.")
        if self.listen:
            parse_listen(self.listen)
        names: set[str] = set()
        for i, tok in enumerate(self.tokens):
            where = f"http.tokens[{i}]"
            if tok.name in names:
                raise ConfigError(f"duplicate token name {tok.name!r}", field=f"{where}.name")
            names.add(tok.name)
            given = [k for k in ("token", "token_env", "sha256") if getattr(tok, k)]
            if len(given) != 1:
                raise ConfigError(
                    "exactly one of token, token_env, sha256 is required", field=where
                )
            if tok.sha256 and (
                len(tok.sha256) != 64 or any(c not in "0123456789abcdef" for c in tok.sha256)
            ):
                raise ConfigError("expected 64 lowercase hex digits", field=f"{where}.sha256")
            if tok.scope == "agent" and not tok.agent:
                raise ConfigError("an agent token needs agent = <agent id>", field=where)
            if tok.scope != "agent" and tok.agent:
                raise ConfigError("only an agent token names an agent", field=f"{where}.agent")

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    @property
    def burst(self) -> int:
        """The bucket's depth: ``rate_burst`` when set, else ``rate_limit`` (at least 1)."""
        return self.rate_burst if self.rate_burst is not None else max(1, self.rate_limit)


def parse_listen(listen: str, *, field: str = "http.listen") -> tuple[str, int]:
    """``"127.0.0.1:8600"`` / ``"[::1]:8600"`` / ``":8600"`` -> (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"expected host:port (port 0-65535), got {listen!r}", field=field)
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # not at import: the CLI loads this config and never asks

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
