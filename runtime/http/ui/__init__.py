"""The operators' dashboard at ``/ui``: server-rendered pages (Jinja2, autoescaped)
with a little plain JavaScript, shipped inside the package (templates/, static/).

``routes(ctx)`` (a route module of ``runtime.http.app``) serves it when
``[http] ui`` is true, and sets ``ctx.state["session_principal"]`` so that the
browser's EventSource on ``/api/v1/events`` authenticates with the session cookie.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from shepherd.runtime.http.context import HttpContext

__all__ = ["routes"]


def routes(ctx: HttpContext) -> list[BaseRoute]:
    if not ctx.config.ui:
        return []
    from shepherd.runtime.http.ui import actions, pages
    from shepherd.runtime.http.ui.render import Ui

    ui = Ui(ctx)
    ctx.state["ui"] = ui
    ctx.state["ui_started"] = time.time()
    ctx.state["session_principal"] = ui.keeper.principal

    async def login_get(request: Request) -> Response:
        return await pages.login_page(ui, request)

    async def login_post(request: Request) -> Response:
        return await actions.login(ui, request)

    async def logout_post(request: Request) -> Response:
        return await actions.logout(ui, request)

    out: list[Any] = [
        Route("/ui/login", login_get, methods=["GET"]),
        Route("/ui/login", login_post, methods=["POST"]),
        Route("/ui/logout", logout_post, methods=["POST"]),
        Mount("/ui/static", StaticFiles(packages=[("shepherd.runtime.http.ui", "static")])),
    ]
    for path, (action, to) in actions.ACTIONS.items():
        out.append(Route("/ui" + path, actions.mutation(ui, action, to), methods=["POST"]))
    for path, page in pages.PAGES.items():
        out.append(Route("/ui" + path, ui.guard(page), methods=["GET"]))
    out.append(Route("/ui/", ui.guard(pages.overview), methods=["GET"]))
    return out
