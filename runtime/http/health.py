"""``/healthz`` (the process answers) and ``/readyz`` (recovery done, store writable),
and ``/openapi.json``. The probes need no token: load balancers call them."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shepherd.runtime.http.api import json_response

__all__ = ["probe_routes"]


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


def probe_routes(ctx: Any) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return json_response(Health("ok"))

    async def readyz(request: Request) -> Response:
        checks = await ctx.readiness()
        ready = all(v == "ok" for v in checks.values())
        return json_response(
            Health("ready" if ready else "not-ready", checks), 200 if ready else 503
        )

    async def openapi(request: Request) -> Response:
        return Response(ctx.openapi_bytes(), media_type="application/json")

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
