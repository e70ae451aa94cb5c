"""Dashboard sessions: a signed cookie, its CSRF token, and the checks on a mutation.

A login (a token posted in a form) becomes a cookie ``shepherd_session`` holding
``name|scope|expires|csrf`` and an HMAC-SHA256 of it under a key drawn at random per
process (a restart logs everyone out). The cookie is HttpOnly, SameSite=Strict, Secure
when the request came over https, and expires after ``[http] session_ttl``. Every
mutation is a POST carrying the session's CSRF token (compared in constant time) from
a page of the same origin (``Origin``, else ``Referer``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from shepherd.runtime.http.auth import Auth, AuthError, Principal
from shepherd.runtime.http.config import Scope

__all__ = ["COOKIE", "Session", "SessionKeeper"]

COOKIE = "shepherd_session"


@dataclass(frozen=True)
class Session:
    principal: Principal
    expires: float
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.principal.scope == "admin"


class SessionKeeper:
    """Issues and checks session cookies for one app."""

    def __init__(self, auth: Auth, ttl: float, key: bytes | None = None) -> None:
        self.auth = auth
        self.ttl = ttl
        self._key = key or secrets.token_bytes(32)

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def login(self, token: str) -> Session:
        """The session a token opens; ``AuthError`` (401 / 429) for a bad token."""
        if self.auth.open:
            who = Principal("open", "admin")
        else:
            if not token.strip():
                raise AuthError(401, "a token is required")
            who = self.auth.authenticate({"authorization": f"Bearer {token.strip()}"})
        scope: Scope = "admin" if who.scope == "admin" else "read"  # agent tokens only look
        return Session(Principal(who.name, scope), time.time() + self.ttl, secrets.token_hex(16))

    def encode(self, s: Session) -> str:
        payload = f"{s.principal.name}|{s.principal.scope}|{s.expires:.0f}|{s.csrf}".encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._sign(payload)

    def decode(self, value: str) -> Session | None:
        body, _, sig = value.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(payload), sig):
            return None
        try:
            name, scope, expires, csrf = payload.decode().split("|")
            until = float(expires)
        except ValueError:
            return None
        if until < time.time() or scope not in ("admin", "read"):
            return None
        return Session(Principal(name, scope), until, csrf)  # type: ignore[arg-type]

    def of(self, request: Request) -> Session | None:
        value = request.cookies.get(COOKIE)
        return self.decode(value) if value else None

    def principal(self, request: Request) -> Principal | None:
        """For the event stream: the session's principal, if the request carries one."""
        s = self.of(request)
        return s.principal if s is not None else None

    def set_cookie(self, response: Response, request: Request, s: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.encode(s),
            max_age=int(self.ttl),
            path=(request.scope.get("root_path", "") or "") + "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE,
            path=(request.scope.get("root_path", "") or "") + "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def same_origin(request: Request) -> bool:
    """The POST came from a page of this origin (``Origin``, else ``Referer``)."""
    host = request.headers.get("host", "")
    expected = f"{request.url.scheme}://{host}"
    origin = request.headers.get("origin")
    if origin is not None:
        return hmac.compare_digest(origin, expected)
    referer = request.headers.get("referer", "")
    return referer == expected or referer.startswith(expected + "/")


def csrf_ok(session: Session, presented: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), presented.encode())
