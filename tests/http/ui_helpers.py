"""Dashboard test helpers: a served runtime with a few jobs, and logging a client in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from shepherd.store.models import ApprovalPolicy, JobSpec, RetryPolicy
from tests.http_helpers import Served, serve

__all__ = ["HTML_OUT", "csrf_of", "login", "origin", "served_ui"]

HTML_OUT = "<script>document.title='pwned'</script><b>bold</b>"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m is not None, "no CSRF token on the page"
    return m.group(1)


async def login(c: httpx.AsyncClient, token: str) -> str:
    """Log ``c`` in (a form POST from the login page's origin); the session's CSRF."""
    r = await c.post("/ui/login", data={"token": token, "next": "/ui"}, headers=origin(c))
    assert r.status_code == 303, r.text
    page = await c.get("/ui")
    assert page.status_code == 200
    return csrf_of(page.text)


def origin(c: httpx.AsyncClient) -> dict[str, str]:
    return {"Origin": str(c.base_url).rstrip("/")}


@asynccontextmanager
async def served_ui(db_path: str, **kw: Any) -> AsyncIterator[Served]:
    """A runtime serving the dashboard, with jobs ``ok`` (python), ``html`` (shell,
    prints HTML and fails), ``gated`` (needs approval), ``slow`` (runs until
    ``srv.gate`` is set) and ``flaky`` (fails until ``srv.heal`` is set)."""
    async with serve(db_path, **kw) as srv:
        rt = srv.rt
        gate = srv.gate = anyio.Event()  # type: ignore[attr-defined]
        heal = srv.heal = anyio.Event()  # type: ignore[attr-defined]

        async def ok(payload: dict[str, Any]) -> dict[str, Any]:
            return {"seen": payload}

        async def slow(payload: dict[str, Any]) -> None:
            await gate.wait()

        async def flaky(payload: dict[str, Any]) -> None:
            if not heal.is_set():
                raise RuntimeError("not yet")

        rt.register("ok", ok)
        rt.register("slow", slow)
        rt.register("flaky", flaky)
        await rt.add_job(JobSpec(name="slow", target="slow"))
        await rt.add_job(JobSpec(name="flaky", target="flaky", retry=RetryPolicy(max_attempts=1)))
        await rt.add_job(JobSpec(name="ok", target="ok", cron="*/5 * * * *", tz="Europe/Paris"))
        await rt.add_job(
            JobSpec(
                name="html",
                executor="shell",
                target=f'echo "{HTML_OUT}"; echo oops >&2; exit 3',
                retry=RetryPolicy(max_attempts=1),
            )
        )
        await rt.add_job(
            JobSpec(
                name="gated",
                target="ok",
                approval=ApprovalPolicy(timeout=3600.0),
                options={"delivery_channel": "log"},
            )
        )
        yield srv
