"""The dashboard's Jinja environment (autoescaped, templates shipped in the package)
and what every page needs: its session, its base URL, the CSRF token."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shepherd.runtime.http.context import HttpContext
from shepherd.runtime.http.ui import fmt
from shepherd.runtime.http.ui.session import Session, SessionKeeper

__all__ = ["Ui", "base_of"]

Page = Callable[["Ui", Request, Session], Awaitable[Response]]


def query_string(filters: dict[str, Any], before: int | None) -> str:
    """The filters of a page (and its cursor) as a query string."""
    pairs = {k: v for k, v in filters.items() if k != "before" and v not in (None, "")}
    if before:
        pairs["before"] = before
    return urlencode(pairs)


def base_of(request: Request) -> str:
    return (request.scope.get("root_path", "") or "") + "/ui"


class Ui:
    """The dashboard of one app: its context, sessions and templates."""

    def __init__(self, ctx: HttpContext) -> None:
        self.ctx = ctx
        self.keeper = SessionKeeper(ctx.auth, float(ctx.config.session_ttl))
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("shepherd.runtime.http.ui", "templates"),
            autoescape=True,  # every template, whatever its name: run output is text
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(
            duration=fmt.duration,
            instant=fmt.instant,
            zoned=fmt.zoned,
            schedule=fmt.schedule_words,
            pretty=fmt.pretty,
        )
        self.env.globals["qs"] = query_string

    @property
    def rt(self) -> Any:
        return self.ctx.rt

    def render(
        self, request: Request, session: Session | None, template: str, /, **values: Any
    ) -> HTMLResponse:
        base = base_of(request)
        values.update(
            base=base,
            static=base + "/static",
            events_url=(request.scope.get("root_path", "") or "") + "/api/v1/events",
            session=session,
            can_write=session is not None and session.can_write,
            csrf=session.csrf if session is not None else "",
            msg=request.query_params.get("msg", ""),
            error=values.get("error", request.query_params.get("error", "")),
            path=request.url.path,
        )
        html = self.env.get_template(template).render(**values)
        return HTMLResponse(
            html,
            status_code=values.get("status", 200),
            headers={
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:;"
                " style-src 'self'; script-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store",
            },
        )

    def guard(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        """A page that needs a session: without one, the login page (then back)."""

        async def endpoint(request: Request) -> Response:
            session = self.keeper.of(request)
            if session is None:
                nxt = quote(
                    request.url.path + (f"?{request.url.query}" if request.url.query else "")
                )
                return RedirectResponse(f"{base_of(request)}/login?next={nxt}", status_code=303)
            began = time.perf_counter()
            response = await page(self, request, session)
            took = (time.perf_counter() - began) * 1000
            response.headers["Server-Timing"] = f"app;dur={took:.2f}"
            return response

        return endpoint
