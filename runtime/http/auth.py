"""Who is calling: bearer tokens, their scopes, and a per-token rate limit.

A request presents ``Authorization: Bearer <token>`` (agent tokens also ``X-Agent-ID``,
as Dispatch does). Tokens are held as SHA-256 digests only; the presented token is
hashed and compared with every digest by ``hmac.compare_digest`` (constant time, no
early exit on the first match). Scopes rank ``read`` < ``agent`` < ``admin``:

- ``read``: every GET; nothing that changes state;
- ``agent``: reads, enqueues, and its own worker calls (claim, heartbeat, report) under
  the ``X-Agent-ID`` its token names (another id: 403);
- ``admin``: everything, and may act for any agent (``X-Agent-ID`` names it).

With no token configured the API is open (every caller is admin), which ``build_app``
allows only on a loopback address. Each token has a token bucket (``rate_limit`` per
minute, ``rate_burst`` deep, by default ``rate_limit``: at most a minute's allowance at
once); an empty bucket answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from shepherd.runtime.http.config import HttpConfig, Scope

__all__ = ["Access", "Auth", "Principal", "digest"]

RANK: dict[Scope, int] = {"read": 0, "agent": 1, "admin": 2}
ENV_TOKENS: tuple[tuple[str, Scope], ...] = (
    ("SHEPHERD_ADMIN_TOKEN", "admin"),
    ("SHEPHERD_READ_TOKEN", "read"),
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The caller: ``name`` (the token's), ``scope``, and for agent tokens ``agent``;
    ``acting`` is the agent the request acts for (``X-Agent-ID``; an agent token's own)."""

    name: str
    scope: Scope
    agent: str = ""
    acting: str = ""

    def allows(self, need: Scope) -> bool:
        return RANK[self.scope] >= RANK[need]


OPEN = Principal("open", "admin")


class AuthError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class Auth:
    """The token table and the rate-limit buckets of one app."""

    entries: list[tuple[str, Principal]]
    rate_per_min: int
    burst: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    now: object = time.monotonic

    @classmethod
    def from_config(cls, cfg: HttpConfig, env: Mapping[str, str] | None = None) -> Auth:
        env = os.environ if env is None else env
        entries: list[tuple[str, Principal]] = []
        for tok in cfg.tokens:
            secret = tok.token or (env.get(tok.token_env, "") if tok.token_env else "")
            if tok.token_env and not secret:
                from shepherd.store.errors import ConfigError

                raise ConfigError(
                    f"environment variable {tok.token_env} is not set",
                    field=f"http.tokens.{tok.name}.token_env",
                )
            hexd = tok.sha256 or digest(secret)
            entries.append((hexd, Principal(tok.name, tok.scope, tok.agent)))
        for var, scope in ENV_TOKENS:
            if env.get(var):
                entries.append((digest(env[var]), Principal(var.lower(), scope)))
        return cls(entries, cfg.rate_limit, cfg.burst)

    @property
    def open(self) -> bool:
        return not self.entries

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller of a request with these headers, or ``AuthError`` (401 / 403)."""
        agent_id = headers.get("x-agent-id", "")
        if self.open:
            return Principal(OPEN.name, OPEN.scope, acting=agent_id)
        raw = headers.get("authorization", "")
        scheme, _, token = raw.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        presented = digest(token.strip())
        found: Principal | None = None
        for hexd, who in self.entries:  # no early exit: every digest is compared
            if hmac.compare_digest(hexd, presented):
                found = who
        if found is None:
            raise AuthError(401, "unknown token")
        if found.scope == "agent":
            if agent_id and agent_id != found.agent:
                raise AuthError(403, f"X-Agent-ID {agent_id!r} does not match this token")
            found = Principal(found.name, found.scope, found.agent, acting=found.agent)
        else:
            found = Principal(found.name, found.scope, acting=agent_id)
        self.take(found.name)
        return found

    def take(self, key: str) -> None:
        """One request from ``key``'s bucket, or ``AuthError(429)`` with Retry-After."""
        if self.rate_per_min <= 0:
            return
        now = self.now()  # type: ignore[operator]
        rate = self.rate_per_min / 60.0
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * rate)
        b.stamp = now
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / rate
            raise AuthError(429, "rate limit exceeded", retry_after=max(1.0, math.ceil(wait)))
        b.tokens -= 1.0


Access = Scope
