"""The dashboard in real headless Chromium (Debian's, driven by Playwright) against a
real uvicorn on loopback: logging in, a dispatch appearing and finishing without a
reload, a failed run's output shown as text, a dead letter retried and run again, a
read-only session with nothing to press (and its forged POST refused), a narrow
window, the keyboard, local times. Screenshots of every page go to
``$SHEPHERD_ARTIFACTS`` (default ``artifacts/screenshots/`` in the repository).

Skipped only when chromium is absent and SHEPHERD_REQUIRE_SERVICES is not "1"."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from tests.http.ui_helpers import HTML_OUT, served_ui
from tests.http_helpers import ADMIN, READ

pytestmark = pytest.mark.anyio

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
if CHROMIUM is None and os.environ.get("SHEPHERD_REQUIRE_SERVICES") != "1":
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = os.environ.get("SHEPHERD_ARTIFACTS") or Path(__file__).parents[2] / "artifacts"
SHOTS = Path(ARTIFACTS) / "screenshots"
WAIT = 20_000  # ms: a live update arrives well within this (SSE, or the polling fallback)


@asynccontextmanager
async def browser_page(url: str, token: str, **context: Any) -> AsyncIterator[Any]:
    """A logged-in page of a fresh browser on ``url``."""
    from playwright.async_api import async_playwright

    assert CHROMIUM is not None, "chromium is required (SHEPHERD_REQUIRE_SERVICES=1)"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            ctx = await browser.new_context(**context)
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url + "/ui/jobs")
            assert "/ui/login" in page.url
            await page.fill("#token", token)
            await page.click("button[type=submit]:has-text('Log in')")
            await page.wait_for_url(url + "/ui/jobs")
            page.js_errors = errors
            yield page
            assert errors == [], errors
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_pages_live_updates_and_screenshots(db_path: str) -> None:
    async with served_ui(db_path) as srv, browser_page(srv.url, ADMIN) as page:
        await srv.rt.add_agent("a1", capabilities=["gpu"])
        await srv.rt.enqueue("gated", {"ticket": "T-7"})
        failed = await srv.rt.enqueue("html", {})
        await srv.rt.wait(failed, timeout=30)
        await page.goto(srv.url + "/ui/dispatches")
        await page.wait_for_selector("body[data-stream=open]", timeout=WAIT)  # the event stream
        # a dispatch enqueued now appears, runs and finishes: no reload
        loaded = await page.evaluate("performance.timeOrigin")
        d = await srv.rt.enqueue("slow", {})
        await page.wait_for_selector(f'tr[data-dispatch="{d}"]', timeout=WAIT)
        await page.wait_for_selector(f'tr[data-dispatch="{d}"][data-state="running"]', timeout=WAIT)
        srv.gate.set()
        await page.wait_for_selector(f'tr[data-dispatch="{d}"][data-state="done"]', timeout=WAIT)
        assert await page.evaluate("performance.timeOrigin") == loaded  # the same document
        # times are the viewer's local time, UTC on hover
        t = page.locator("time").first
        assert "UTC" in (await t.get_attribute("title") or "")
        assert "UTC" not in await t.inner_text()
        run = (await srv.rt.runs(dispatch_id=failed))[0].id
        for name, path in [
            ("overview", ""),
            ("jobs", "/jobs"),
            ("job", "/jobs/ok"),
            ("schedules", "/schedules"),
            ("dispatches", "/dispatches"),
            ("dispatch", f"/dispatches/{failed}"),
            ("runs", "/runs"),
            ("run-failed", f"/runs/{run}"),
            ("dead", "/dead"),
            ("approvals", "/approvals"),
            ("agents", "/agents"),
        ]:
            resp = await page.goto(srv.url + "/ui" + path)
            assert resp is not None and resp.status == 200, path
            await shot(page, name)
        await page.goto(srv.url + "/ui/login")
        await shot(page, "login")


async def test_a_failed_runs_output_is_text(db_path: str) -> None:
    async with served_ui(db_path) as srv, browser_page(srv.url, READ) as page:
        d = await srv.rt.enqueue("html", {})
        await srv.rt.wait(d, timeout=30)
        await page.goto(srv.url + "/ui/runs?job=html")
        await page.click('tr[data-state="error"] a[href^="/ui/runs/"]')
        await page.wait_for_selector("#run-stdout")
        assert (await page.inner_text("#run-stdout")).strip() == HTML_OUT.replace("'", "'")
        assert await page.locator("#run-stdout b").count() == 0  # not markup
        assert await page.title() != "pwned"
        assert "oops" in await page.inner_text("#run-stderr")
        assert "code 3" in await page.inner_text("#run-error")
        assert await page.locator(".timeline li").count() == 1


async def test_retry_a_dead_letter_and_see_it_run(db_path: str) -> None:
    async with served_ui(db_path) as srv, browser_page(srv.url, ADMIN) as page:
        d = await srv.rt.enqueue("flaky", {})
        assert (await srv.rt.wait(d, timeout=30)).status == "dead"
        await page.goto(srv.url + "/ui/dead")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.check(f'tr[data-dispatch="{d}"] input[type=checkbox]')
        srv.heal.set()
        await page.click("button:has-text('Retry selected')")
        await page.wait_for_selector(".msg:has-text('retried 1')")
        await page.goto(srv.url + f"/ui/dispatches/{d}")
        await page.wait_for_selector('.timeline li[data-state="ok"]', timeout=WAIT)
        assert await page.locator(".timeline li").count() == 2
        await shot(page, "dead-retried")


async def test_a_cancelled_confirmation_changes_nothing(db_path: str) -> None:
    async with served_ui(db_path) as srv, browser_page(srv.url, ADMIN) as page:
        d = await srv.rt.enqueue("flaky", {})
        await srv.rt.wait(d, timeout=30)
        await page.goto(srv.url + "/ui/dead")
        page.once("dialog", lambda dialog: dialog.dismiss())
        await page.check(f'tr[data-dispatch="{d}"] input[type=checkbox]')
        await page.click("button:has-text('Purge selected')")
        assert (await srv.rt.dispatch(d)).status == "dead"


async def test_read_only_has_nothing_to_press_and_a_forged_post_is_refused(db_path: str) -> None:
    async with served_ui(db_path) as srv, browser_page(srv.url, READ) as page:
        d = await srv.rt.enqueue("flaky", {})
        await srv.rt.wait(d, timeout=30)
        await srv.rt.enqueue("gated", {})
        await srv.rt.add_agent("a1")
        for path in ["", "/jobs", "/jobs/ok", "/dead", "/approvals", "/agents", "/dispatches"]:
            await page.goto(srv.url + "/ui" + path)
            buttons = await page.locator(
                "main form[method=post] button, main input[type=checkbox]"
            ).count()
            assert buttons == 0, path
            assert await page.locator("header button:has-text('Log out')").count() == 1
        csrf = await page.get_attribute("header input[name=csrf]", "value")
        for path, form in [("/ui/jobs/ok/disable", {}), ("/ui/dead/purge", {"id": str(d)})]:
            resp = await page.request.post(
                srv.url + path,
                form={"csrf": csrf or "", **form},
                headers={"Origin": srv.url},
                max_redirects=0,
            )
            assert resp.status == 403, path
        assert (await srv.rt.get_job("ok")).spec.enabled
        assert (await srv.rt.dispatch(d)).status == "dead"


async def test_narrow_window_and_keyboard(db_path: str) -> None:
    viewport = {"width": 360, "height": 740}
    async with served_ui(db_path) as srv, browser_page(srv.url, ADMIN, viewport=viewport) as page:
        for path in ["", "/jobs", "/runs", "/dispatches", "/schedules"]:
            await page.goto(srv.url + "/ui" + path)
            wide = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert wide <= 1, (path, wide)
        await shot(page, "narrow-schedules")
        await page.goto(srv.url + "/ui/jobs")
        for _ in range(80):  # Tab through the page to the first "Run now"
            await page.keyboard.press("Tab")
            label = await page.evaluate("document.activeElement.textContent.trim()")
            if label == "Run now":
                break
        else:
            raise AssertionError("no Run now button reachable with Tab")
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline  # a visible focus ring
        await page.keyboard.press("Enter")
        await page.wait_for_selector(".msg:has-text('queued')")

        async def queued() -> bool:
            return len(await srv.rt.dispatches()) == 1  # of the first job listed

        await eventually(queued, what="the keyboard's run now queued a dispatch")
