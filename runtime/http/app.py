"""The ASGI application: every endpoint module's routes, the probes, the document.

``build_app(rt)`` is what the daemon serves (``[http] listen``) and what an embedding
application mounts (``app.mount("/shepherd", build_app(rt))``): the same object either
way. Endpoint modules are listed in ``endpoint_modules``; modules that serve raw
Starlette routes (streams, the dashboard) are listed in ``route_factories``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from shepherd.runtime.http.api import Endpoint, error_response, ordered, route_of
from shepherd.runtime.http.auth import Auth
from shepherd.runtime.http.config import VERSION, HttpConfig, is_loopback, parse_listen
from shepherd.runtime.http.context import HttpContext
from shepherd.runtime.http.health import probe_routes
from shepherd.runtime.http.openapi import encode, openapi_document
from shepherd.store.errors import ConfigError

__all__ = ["HttpContext", "build_app", "check_exposure"]

log = logging.getLogger("shepherd.http")

# Modules with ``ENDPOINTS: list[Endpoint]`` (relative to shepherd.runtime.http).
ENDPOINT_MODULES: tuple[str, ...] = (
    # @@endpoint-modules@@
    "rest_jobs",
    "rest_queue",
    "rest_ops",
    "rest_groups",
    "workers",
    "tasks",
)
# Modules with ``routes(ctx) -> list[BaseRoute]`` (streams, metrics, the dashboard).
ROUTE_MODULES: tuple[str, ...] = (
    # @@route-modules@@
    "events",
    "metrics",
    "ui",
    "workers",
)


def check_exposure(cfg: HttpConfig, auth: Auth) -> None:
    """Listening beyond loopback with no token would give anyone admin: refused."""
    if not cfg.listen:
        return
    host, _ = parse_listen(cfg.listen)
    if auth.open and not is_loopback(host):
        raise ConfigError(
            f"listening on {host} (not loopback) needs at least one token: add"
            " [[http.tokens]] or set SHEPHERD_ADMIN_TOKEN",
            field="http.listen",
        )


def endpoints_of(names: tuple[str, ...]) -> list[Endpoint]:
    out: list[Endpoint] = []
    for name in names:
        mod = importlib.import_module(f"shepherd.runtime.http.{name}")
        out.extend(mod.ENDPOINTS)
    return out


def build_app(rt: Any, config: HttpConfig | None = None, *, auth: Auth | None = None) -> Starlette:
    cfg = config if config is not None else rt.config.http
    auth = auth or Auth.from_config(cfg)
    check_exposure(cfg, auth)
    ctx = HttpContext(rt, cfg, auth)
    ctx.endpoints = endpoints_of(ENDPOINT_MODULES)
    ctx.document = lambda: encode(
        openapi_document(ctx.endpoints, title="shepherd", version=VERSION)
    )
    routes: list[BaseRoute] = [*probe_routes(ctx)]
    routes.extend(route_of(ep, ctx) for ep in ordered(ctx.endpoints))
    for name in ROUTE_MODULES:
        mod = importlib.import_module(f"shepherd.runtime.http.{name}")
        routes.extend(mod.routes(ctx))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail))

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.shepherd = rt
    app.state.http = ctx
    return app
