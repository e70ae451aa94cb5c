"""``ui``: the dashboard's server time per page, and a run's outcome reaching an open page.

A database is filled with plain SQL (``bench/ui_fixture.py``) at two sizes: 1,000 runs
(100 queued dispatches) and 1,000,000 runs (100,000 queued); ``--quick``: 1,000 and
50,000 runs. The daemon's HTTP app runs on a real uvicorn on loopback; a client logs in
(session cookie) and fetches every page `REPEAT` times. The server's own time for each
page is read from its ``Server-Timing`` header (from the session check to the rendered
HTML, the store's queries included); the figures are ``page_p50.<page>`` and
``page_p99.<page>`` (ms) with ``n`` = runs, the large size as a ratio to the small one
of the same page (``page_p50.<page>.1k_runs``).

``outcome_to_page``: a browser (Debian's chromium, headless) keeps ``/ui/runs`` open
while runs of a python job are enqueued one at a time; the latency is from the
runtime's outcome event to the moment the row shows ``ok`` in the page (a
MutationObserver's ``Date.now()``, same host clock), over the event stream. Skipped
when chromium is absent.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.context import BenchContext
from bench.report import Result, percentiles
from bench.shepherd_bench import result
from bench.ui_fixture import fill
from shepherd import Config, Runtime
from shepherd.actors.messages import OutcomeEvent
from shepherd.runtime.http.config import HttpConfig, TokenConfig
from shepherd.store.models import JobSpec

SCENARIO = "ui"
TOKEN = "bench-admin-token"
REPEAT = 40
QUICK_REPEAT = 10
LIVE_RUNS = 20
BASE = ".1k_runs"  # the small size's metrics: the same-run baseline of the large one
PAGES = {
    "overview": "/ui",
    "jobs": "/ui/jobs",
    "job": "/ui/jobs/job01",
    "schedules": "/ui/schedules",
    "dispatches": "/ui/dispatches",
    "dispatches_queued": "/ui/dispatches?state=queued",
    "dispatches_filtered": "/ui/dispatches?job=job03&priority=high&since=24h",
    "runs": "/ui/runs",
    "runs_failed": "/ui/runs?state=error",
    "runs_agent": "/ui/runs?agent=agent3&since=7d",
    "runs_older": "/ui/runs?before={mid}",
    "run": "/ui/runs/{mid}",
    "dispatch": "/ui/dispatches/{mid}",
    "dead": "/ui/dead",
    "approvals": "/ui/approvals",
    "agents": "/ui/agents",
}
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


def _config(db: Path) -> Config:
    http = HttpConfig(
        listen="127.0.0.1:0",
        tokens=[TokenConfig(name="bench", scope="admin", token=TOKEN)],
        rate_limit=0,
    )
    return Config(database=str(db), http=http, start_check="off")


async def _login(c: httpx.AsyncClient, url: str) -> None:
    r = await c.post("/ui/login", data={"token": TOKEN}, headers={"Origin": url})
    assert r.status_code == 303, r.text


def _server_ms(resp: httpx.Response) -> float:
    timing = resp.headers["server-timing"]  # app;dur=1.23
    return float(timing.split("dur=")[1])


async def _pages(rt: Runtime, runs: int, repeat: int) -> list[Result]:
    addr = rt.http_address
    assert addr is not None
    url = f"http://{addr[0]}:{addr[1]}"
    out: list[Result] = []
    async with httpx.AsyncClient(base_url=url, timeout=60.0, follow_redirects=False) as c:
        await _login(c, url)
        for name, path in PAGES.items():
            path = path.format(mid=max(1, runs // 2))
            samples: list[float] = []
            for i in range(repeat + 3):
                resp = await c.get(path)
                assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
                if i >= 3:  # warm-up
                    samples.append(_server_ms(resp))
            p = percentiles(samples)
            n = None if runs <= 1000 else runs  # the small size is the same-run baseline
            for q, v in (("p50", p.p50), ("p99", p.p99)):
                metric = f"page_{q}.{name}"
                if n is None:  # the baseline: its own name, so a ratio never meets itself
                    out.append(result(SCENARIO, metric + BASE, v, "ms", note="1,000 runs"))
                else:
                    ref = f"{SCENARIO}:{metric}{BASE}"
                    out.append(result(SCENARIO, metric, v, "ms", n=n, ratio_to=ref))
    return out


async def _live(rt: Runtime, runs: int) -> list[Result]:
    chromium = shutil.which("chromium")
    if chromium is None:
        return []
    from playwright.async_api import async_playwright

    async def noop(payload: dict[str, Any]) -> None:
        return None

    rt.register("ui-live", noop)
    await rt.add_job(JobSpec(name="ui-live", target="ui-live"))
    addr = rt.http_address
    assert addr is not None
    url = f"http://{addr[0]}:{addr[1]}"
    lat: list[float] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            # the probes below are evaluated scripts, which the dashboard's CSP refuses
            page = await (await browser.new_context(bypass_csp=True)).new_page()
            await page.goto(url + "/ui/login")
            await page.fill("#token", TOKEN)
            await page.click("button[type=submit]:has-text('Log in')")
            await page.goto(url + "/ui/runs?job=ui-live")
            await page.wait_for_function("document.body.dataset.stream === 'open'")
            await page.evaluate(
                """() => { window.__seen = {};
                new MutationObserver(() => {
                  document.querySelectorAll('tr[data-run][data-state=ok]').forEach(tr => {
                    const id = tr.dataset.run;
                    if (!(id in window.__seen)) window.__seen[id] = Date.now();
                  });
                }).observe(document.body, {subtree: true, childList: true}); }"""
            )
            async with rt.subscribe(OutcomeEvent) as events:
                for _ in range(LIVE_RUNS):
                    d = await rt.enqueue("ui-live", {})
                    async for ev in events:
                        if ev.dispatch_id == d:
                            break
                    at = time.time()
                    run_id = ev.run_id
                    await page.wait_for_function(f"window.__seen['{run_id}'] !== undefined")
                    seen = await page.evaluate(f"window.__seen['{run_id}']")
                    lat.append(max(0.0, seen / 1000 - at) * 1000)
        finally:
            await browser.close()
    p = percentiles(lat)
    n = None if runs <= 1000 else runs
    return [
        result(
            SCENARIO,
            f"outcome_to_page_{q}" + ("" if n else BASE),
            v,
            "ms",
            n=n,
            note="SSE, browser",
            ratio_to=f"{SCENARIO}:outcome_to_page_{q}{BASE}" if n else None,
        )
        for q, v in (("p50", p.p50), ("p99", p.p99))
    ]


async def run(ctx: BenchContext) -> list[Result]:
    sizes = [(1_000, 100), (50_000, 5_000)] if ctx.quick else [(1_000, 100), (1_000_000, 100_000)]
    repeat = QUICK_REPEAT if ctx.quick else REPEAT
    out: list[Result] = []
    for runs, queued in sizes:
        db = ctx.path("ui", f"ui-{runs}.db")
        began = time.perf_counter()
        await anyio.to_thread.run_sync(lambda db=db, r=runs, q=queued: fill(db, runs=r, queued=q))
        n = None if runs <= 1000 else runs
        out.append(
            result(
                SCENARIO,
                "fill_seconds",
                time.perf_counter() - began,
                "s",
                n=n,
                note=f"{runs} runs, {queued} queued",
            )
        )
        async with Runtime.open(_config(db)) as rt:

            async def noop(payload: dict[str, Any]) -> None:
                return None

            rt.register("noop", noop)
            out.extend(await _pages(rt, runs, repeat))
            out.extend(await _live(rt, runs))
    return out
