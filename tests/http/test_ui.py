"""The dashboard through a real uvicorn with httpx: login into a signed session
cookie, every page for admin and read-only sessions, every action, and its refusals
(no session, wrong CSRF, another origin, read-only: 403 and nothing changed),
escaping of run output, filters and keyset pages."""

from __future__ import annotations

import re

import httpx
import pytest

from shepherd.store.models import JobSpec
from tests.helpers import eventually
from tests.http.ui_helpers import HTML_OUT, csrf_of, login, origin, served_ui
from tests.http_helpers import ADMIN, AGENT, READ, serve

pytestmark = [pytest.mark.anyio, pytest.mark.engines("sqlite", "postgresql")]

PAGES = [
    "/ui",
    "/ui/jobs",
    "/ui/jobs/ok",
    "/ui/schedules",
    "/ui/dispatches",
    "/ui/runs",
    "/ui/dead",
    "/ui/approvals",
    "/ui/agents",
]
ACTIONS = "run|enable|disable|edit|approve|reject|drain|undrain"
MUTATING = re.compile(rf'<form method="post" action="[^"]*/({ACTIONS})"|formaction=')


def client(srv: object) -> httpx.AsyncClient:
    return srv.client(token=None, follow_redirects=False)  # type: ignore[attr-defined]


async def failed_run(srv: object) -> int:
    rt = srv.rt  # type: ignore[attr-defined]
    d = await rt.enqueue("html", {})
    final = await rt.wait(d, timeout=30)
    assert final.status == "dead"
    return int(final.current_run_id or (await rt.runs(dispatch_id=d))[0].id)


async def test_login_sets_a_strict_httponly_cookie_and_pages_need_it(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        r = await c.get("/ui/jobs")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
        bad = await c.post("/ui/login", data={"token": "nope"}, headers=origin(c))
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        cross = await c.post("/ui/login", data={"token": ADMIN}, headers={"Origin": "http://evil"})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
        ok = await c.post("/ui/login", data={"token": ADMIN, "next": "/ui/jobs"}, headers=origin(c))
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/jobs"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
        assert (await c.get("/ui/jobs")).status_code == 200
        # an open redirect is not followed: next must stay under /ui
        away = await c.post(
            "/ui/login", data={"token": ADMIN, "next": "https://evil/"}, headers=origin(c)
        )
        assert away.headers["location"] == "/ui"


async def test_a_tampered_or_foreign_cookie_is_no_session(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        await login(c, READ)
        value = c.cookies["shepherd_session"]
        body, _, sig = value.partition(".")
        import base64

        forged = (
            base64.urlsafe_b64encode(
                base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(
                    b"|read|", b"|admin|"
                )
            )
            .decode()
            .rstrip("=")
        )
        c.cookies.set("shepherd_session", f"{forged}.{sig}")
        assert (await c.get("/ui")).status_code == 303
        # the event stream's hook sees the same session
        hook = srv.rt.asgi_app.state.http.state["session_principal"]
        assert callable(hook)


async def test_every_page_renders_for_admin_and_read_only(db_path: str) -> None:
    async with served_ui(db_path) as srv:
        run_id = await failed_run(srv)
        await srv.rt.enqueue("gated", {"ticket": "T-1"})
        await srv.rt.add_agent("a1", capabilities=["gpu"], max_concurrent=2)
        extra = [f"/ui/runs/{run_id}", f"/ui/dispatches/{(await srv.rt.run(run_id)).dispatch_id}"]
        for token in (ADMIN, READ, AGENT):
            async with client(srv) as c:
                await login(c, token)
                for path in PAGES + extra:
                    r = await c.get(path)
                    assert r.status_code == 200, (token, path, r.text[:500])
                    assert "Content-Security-Policy" in r.headers
                    if token == ADMIN:
                        continue
                    assert not MUTATING.search(r.text), (token, path)
                    assert "read-only" in r.text
        async with client(srv) as c:
            await login(c, ADMIN)
            assert MUTATING.search((await c.get("/ui/jobs")).text)
            assert "T-1" in (await c.get("/ui/approvals")).text
            agents = (await c.get("/ui/agents")).text
            assert "gpu" in agents and "0/2" in agents
            jobs = (await c.get("/ui/jobs")).text
            assert "every 5 minutes (Europe/Paris)" in jobs and "CET" in jobs


async def test_run_output_is_escaped(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        run_id = await failed_run(srv)
        await login(c, READ)
        page = (await c.get(f"/ui/runs/{run_id}")).text
        assert HTML_OUT not in page
        assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page
        assert "Shell exited with code 3" in page and "oops" in page


async def test_mutations_refused_without_csrf_origin_or_admin(db_path: str) -> None:
    async with served_ui(db_path) as srv:
        async with client(srv) as c:
            csrf = await login(c, ADMIN)
            for headers, data in [
                (origin(c), {}),  # no token
                (origin(c), {"csrf": "0" * 32}),  # a wrong one
                ({"Origin": "http://evil.example"}, {"csrf": csrf}),  # another origin
                ({}, {"csrf": csrf}),  # neither Origin nor Referer
            ]:
                r = await c.post("/ui/jobs/ok/disable", data=data, headers=headers)
                assert r.status_code == 403, (headers, data)
            assert (await srv.rt.get_job("ok")).spec.enabled
        async with client(srv) as c:
            csrf = await login(c, READ)  # the logout form's token: a valid one
            for path in ("/ui/jobs/ok/disable", "/ui/jobs/ok/run", "/ui/dead/purge"):
                r = await c.post(path, data={"csrf": csrf, "id": "1"}, headers=origin(c))
                assert r.status_code == 403 and "read-only" in r.text
            assert (await srv.rt.get_job("ok")).spec.enabled
            assert await srv.rt.dispatches(job="ok") == []
        async with client(srv) as c:  # no session at all
            r = await c.post("/ui/jobs/ok/disable", data={"csrf": csrf}, headers=origin(c))
            assert r.status_code == 401


async def test_job_actions_and_edit(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        csrf = await login(c, ADMIN)
        post = lambda path, **data: c.post(path, data={"csrf": csrf, **data}, headers=origin(c))  # noqa: E731
        r = await post("/ui/jobs/ok/disable")
        assert r.status_code == 303 and "disabled" in r.headers["location"]
        assert not (await srv.rt.get_job("ok")).spec.enabled
        await post("/ui/jobs/ok/enable")
        assert (await srv.rt.get_job("ok")).spec.enabled
        r = await post("/ui/jobs/ok/run")
        assert "queued" in r.headers["location"]
        assert len(await srv.rt.dispatches(job="ok")) == 1
        spec = '{"name": "ok", "target": "ok", "cron": "0 9 * * 1-5", "description": "daily"}'
        r = await post("/ui/jobs/ok/edit", spec=spec)
        assert r.status_code == 303 and "msg=" in r.headers["location"], r.headers
        row = await srv.rt.get_job("ok")
        assert row.spec.cron == "0 9 * * 1-5" and row.spec.description == "daily"
        page = (await c.get("/ui/jobs")).text
        assert "at 09:00 on Mon-Fri (UTC)" in page
        toml = 'target = "ok"\ncron = "*/10 * * * *"\n'
        await post("/ui/jobs/ok/edit", spec=toml)
        assert (await srv.rt.get_job("ok")).spec.cron == "*/10 * * * *"
        for bad, what in [
            ('{"target": "ok", "cron": "61 * * * *"}', "cron"),
            ('{"target": "ok", "colour": "red"}', "colour"),
            ("not [valid", "spec"),
            ('{"name": "other", "target": "ok"}', "name"),
        ]:
            r = await post("/ui/jobs/ok/edit", spec=bad)
            assert r.status_code == 303 and "error=" in r.headers["location"], bad
            shown = (await c.get(r.headers["location"])).text
            assert what in shown and 'class="err"' in shown, (bad, shown[:2000])
            assert (await srv.rt.get_job("ok")).spec.cron == "*/10 * * * *"
        assert (await post("/ui/jobs/nope/run")).headers["location"].count("error=") == 1


async def test_dead_letters_retry_and_purge(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        csrf = await login(c, ADMIN)
        ids = [int((await srv.rt.run(await failed_run(srv))).dispatch_id or 0) for _ in range(3)]
        page = (await c.get("/ui/dead")).text
        assert all(f'data-dispatch="{i}"' in page for i in ids) and "data-confirm" in page
        data = [("csrf", csrf), ("id", str(ids[0])), ("id", str(ids[1]))]
        form = {**origin(c), "Content-Type": "application/x-www-form-urlencoded"}
        r = await c.post("/ui/dead/retry", content=str(httpx.QueryParams(data)), headers=form)
        assert r.status_code == 303 and "retried%202" in r.headers["location"]

        async def retried() -> bool:
            for i in ids[:2]:
                if len(await srv.rt.runs(dispatch_id=i)) != 2:
                    return False
            return True

        await eventually(retried, what="retried dead letters ran again")
        r = await c.post(
            "/ui/dead/purge", data={"csrf": csrf, "id": str(ids[2])}, headers=origin(c)
        )
        assert "purged%201" in r.headers["location"]
        r = await c.post("/ui/dead/purge", data={"csrf": csrf}, headers=origin(c))
        assert "error=" in r.headers["location"]  # nothing selected: refused, named


async def test_approvals_and_agents(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        csrf = await login(c, ADMIN)
        post = lambda path, **data: c.post(path, data={"csrf": csrf, **data}, headers=origin(c))  # noqa: E731
        await srv.rt.enqueue("gated", {})
        await srv.rt.enqueue("gated", {})
        pending = await srv.rt.approvals(status="pending")
        assert len(pending) == 2
        a, b = pending
        r = await post(f"/ui/approvals/{a.id}/reject", reason="")
        assert "error=" in r.headers["location"]
        assert (await srv.rt.approval(a.id)).status == "pending"
        await post(f"/ui/approvals/{a.id}/reject", reason="not now")
        rejected = await srv.rt.approval(a.id)
        assert rejected.status == "rejected" and rejected.reason == "not now"
        await post(f"/ui/approvals/{b.id}/approve")
        assert (await srv.rt.approval(b.id)).status == "approved"
        await srv.rt.add_agent("a1")
        await post("/ui/agents/a1/drain")
        assert (await srv.rt.agent("a1")).status == "draining"
        assert "Undrain" in (await c.get("/ui/agents")).text
        await post("/ui/agents/a1/undrain")
        assert (await srv.rt.agent("a1")).status != "draining"


async def test_filters_and_keyset_pages(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        await login(c, READ)
        ids = [await srv.rt.enqueue("ok", {"i": i}, delay=3600) for i in range(120)]
        await srv.rt.enqueue("ok", {}, priority="high", delay=3600)
        first = (await c.get("/ui/dispatches?job=ok&state=queued")).text
        shown = [int(x) for x in re.findall(r'data-dispatch="(\d+)"', first)]
        assert len(shown) == 50 and shown == sorted(shown, reverse=True)
        nxt = re.search(r'rel="next" href="\?([^"]+)"', first)
        assert nxt is not None and "before=" in nxt.group(1)
        second = (await c.get("/ui/dispatches?" + nxt.group(1).replace("&amp;", "&"))).text
        more = [int(x) for x in re.findall(r'data-dispatch="(\d+)"', second)]
        assert len(more) == 50 and max(more) < min(shown)
        high = (await c.get("/ui/dispatches?priority=high")).text
        assert len(re.findall(r'data-dispatch="', high)) == 1
        assert (
            len(re.findall(r'data-dispatch="', (await c.get("/ui/dispatches?job=nope")).text)) == 0
        )
        assert (await c.get("/ui/dispatches?state=bogus")).status_code == 422
        assert (await c.get("/ui/runs?since=5y")).status_code == 422
        assert (await c.get("/ui/dispatches?before=abc")).status_code == 422
        assert ids[0] in [
            int(x)
            for x in re.findall(
                r'data-dispatch="(\d+)"', (await c.get(f"/ui/dispatches?before={ids[1]}")).text
            )
        ]


async def test_logout_ends_the_session(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        csrf = await login(c, ADMIN)
        r = await c.post("/ui/logout", data={"csrf": csrf}, headers=origin(c))
        assert r.status_code == 303 and "shepherd_session=" in r.headers["set-cookie"]
        assert (await c.get("/ui")).status_code == 303


async def test_ui_off_serves_nothing(db_path: str) -> None:
    async with serve(db_path, http={"ui": False}) as srv, client(srv) as c:
        assert (await c.get("/ui/login")).status_code == 404


async def test_skipped_slots_and_next_fires_on_schedules(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        await srv.rt.add_job(JobSpec(name="often", target="ok", every=600.0))
        await login(c, READ)
        page = (await c.get("/ui/schedules")).text
        assert "often" in page and "ok" in page
        assert csrf_of(page)


async def test_mounted_under_a_prefix(db_path: str) -> None:
    """An application mounting ``build_app(rt)`` at /shepherd gets the dashboard there:
    links, redirects, the cookie's path and the event stream's URL carry the prefix."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from shepherd.runtime.http import build_app

    async with served_ui(db_path) as srv:
        outer = Starlette(routes=[Mount("/shepherd", build_app(srv.rt))])
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await c.get("/shepherd/ui/jobs")
            assert r.status_code == 303
            assert r.headers["location"].startswith("/shepherd/ui/login?next=/shepherd/ui/jobs")
            r = await c.post(
                "/shepherd/ui/login",
                data={"token": ADMIN, "next": "/shepherd/ui/jobs"},
                headers={"Origin": "http://testserver"},
            )
            assert r.status_code == 303 and r.headers["location"] == "/shepherd/ui/jobs"
            assert "path=/shepherd/" in r.headers["set-cookie"].lower()
            page = (await c.get("/shepherd/ui/jobs")).text
            assert 'href="/shepherd/ui/jobs/ok"' in page
            assert 'data-events="/shepherd/api/v1/events"' in page
            assert 'href="/shepherd/ui/static/ui.css"' in page
            assert (await c.get("/shepherd/ui/static/ui.js")).status_code == 200


async def test_offloaded_output_is_named_on_the_run_page(db_path: str) -> None:
    async with served_ui(db_path) as srv, client(srv) as c:
        spec = JobSpec(
            name="big",
            executor="shell",
            target="head -c 5000 /dev/zero | tr '\\0' x",
            options={"output_offload": 1000, "output_excerpt": 100},
        )
        await srv.rt.add_job(spec)
        d = await srv.rt.enqueue("big", {})
        assert (await srv.rt.wait(d, timeout=30)).status == "done"
        run = (await srv.rt.runs(dispatch_id=d))[0]
        path = (run.details or {}).get("stdout_path")
        assert path, run.details
        await login(c, READ)
        page = (await c.get(f"/ui/runs/{run.id}")).text
        assert "Offloaded output" in page and f"<code>{path}</code>" in page


async def test_an_expired_session_is_no_session(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as _time
    import types

    from shepherd.runtime.http.ui import session as session_module

    async with served_ui(db_path) as srv, client(srv) as c:
        await login(c, READ)
        assert (await c.get("/ui")).status_code == 200
        later = _time.time() + 13 * 3600  # past the default session_ttl of 12 h
        # the session module's clock only (the runtime keeps the real one)
        monkeypatch.setattr(session_module, "time", types.SimpleNamespace(time=lambda: later))
        assert (await c.get("/ui")).status_code == 303  # back to the login page
