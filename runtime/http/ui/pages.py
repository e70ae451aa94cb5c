"""The dashboard's pages (GET): overview, jobs, dispatches, runs, dead letters,
approvals, agents, schedules. Each reads through the Runtime API or the store's
bounded dashboard queries (its engine's ``dashboard`` module), never a table scan. The module
is long because every page is here, each a short function over its queries."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from shepherd.actors.scheduler.cron import next_fires
from shepherd.runtime.http.ui import fmt
from shepherd.runtime.http.ui.render import Ui
from shepherd.runtime.http.ui.session import Session
from shepherd.store.errors import NotFound
from shepherd.store.models import DISPATCH_STATES, OUTCOMES, PRIORITIES, to_builtins
from shepherd.store.shared.dashboard import ENDED, Page

__all__ = ["PAGES"]

SINCE = {"15m": 900.0, "1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
RUN_STATES = ("running", *OUTCOMES)
SCHEDULED_JOBS = 200  # the schedules page expands the fires of the soonest jobs only


def _q(ui: Ui) -> Any:
    """The dashboard queries of the engine the runtime serves (run with ``read``)."""
    return ui.rt.store.dashboard


async def overview(ui: Ui, request: Request, s: Session) -> Response:
    rt = ui.rt
    now = time.time()
    agg = await rt.store.read(_q(ui).overview, now)
    counts, series = agg["counts"], agg["series"]
    stats = rt.statistics()
    sup = stats.get("supervisor", {})
    disp = stats.get("dispatcher", {})
    ok = sum(b["ok"] for b in series)
    failed = sum(b["failed"] for b in series)
    started = ui.ctx.state.get("ui_started", now)
    return ui.render(
        request,
        s,
        "overview.html",
        title="Overview",
        counts=counts,
        caps={s: 10_000 if s in ENDED else 100_000 for s in counts},
        by_priority=agg["by_priority"],
        sampled=agg["sampled"],
        throughput=fmt.bars_svg(series, keys=("ok", "failed"), title="runs per 5 min"),
        failure_rate=(failed / (ok + failed)) if ok + failed else 0.0,
        ok=ok,
        failed=failed,
        running=agg["running"],
        breakers=disp.get("breakers", {}),
        children=sup.get("children", {}),
        restarts=sup.get("restarts", 0),
        crashes=sup.get("crashes", 0),
        last_error=sup.get("last_error"),
        recovery=disp.get("recovery_seconds"),
        recovered=disp.get("recovered", 0),
        uptime=now - started,
        instance=stats.get("instance", ""),
        live=True,
    )


async def jobs(ui: Ui, request: Request, s: Session) -> Response:
    rows = await ui.rt.list_jobs()
    rates = await ui.rt.store.read(_q(ui).job_success, [r.id for r in rows])
    now = time.time()
    fires = {r.id: _fires(r, now, 3) for r in rows}
    return ui.render(request, s, "jobs.html", title="Jobs", jobs=rows, rates=rates, fires=fires)


def _fires(row: Any, now: float, n: int, horizon: float | None = None) -> list[float]:
    if row.next_run_at is None or not row.spec.enabled:
        return []
    out = [row.next_run_at, *next_fires(row.spec, row.next_run_at, n - 1, anchor=row.anchor)]
    return [t for t in out if horizon is None or t <= now + horizon]


async def job(ui: Ui, request: Request, s: Session) -> Response:
    name = request.path_params["name"]
    try:
        row = await ui.rt.get_job(name)
    except NotFound:
        return ui.render(
            request, s, "error.html", title="Not found", status=404, error=f"no job {name!r}"
        )
    spec_json = msgspec.json.format(msgspec.json.encode(to_builtins(row.spec)), indent=2).decode()
    recent = await ui.rt.store.read(_q(ui).run_page, job_id=row.id, limit=20)
    return ui.render(
        request,
        s,
        "job.html",
        title=f"Job {name}",
        job=row,
        spec_text=request.query_params.get("spec") or spec_json,
        fires=_fires(row, time.time(), 5),
        runs=recent.rows,
        live=True,
    )


def _filters(request: Request) -> tuple[dict[str, Any], str]:
    """Page filters from the query string, and an error naming a bad one."""
    p = request.query_params
    out: dict[str, Any] = {}
    for key in ("job", "state", "priority", "agent", "since"):
        if p.get(key):
            out[key] = p[key].strip()
    if "before" in p:
        if not p["before"].isdigit():
            return out, "before: expected an id"
        out["before"] = int(p["before"])
    if "since" in out and out["since"] not in SINCE:
        return out, f"since: expected one of {', '.join(SINCE)}"
    if "priority" in out and out["priority"] not in PRIORITIES:
        return out, f"priority: expected one of {', '.join(PRIORITIES)}"
    return out, ""


async def _job_id(ui: Ui, name: str | None) -> int | None:
    if name is None:
        return None
    row = await ui.rt.store.job(name)
    return -1 if row is None else row.id  # -1: no such job, an empty page


async def dispatches(ui: Ui, request: Request, s: Session) -> Response:
    f, error = _filters(request)
    if not error and f.get("state") and f["state"] not in DISPATCH_STATES:
        error = f"state: expected one of {', '.join(DISPATCH_STATES)}"
    page = Page(rows=[])
    if not error:
        page = await ui.rt.store.read(
            _q(ui).dispatch_page,
            job_id=await _job_id(ui, f.get("job")),
            status=f.get("state"),
            priority=f.get("priority"),
            agent=f.get("agent"),
            since=time.time() - SINCE[f["since"]] if "since" in f else None,
            before=f.get("before"),
        )
    return ui.render(
        request,
        s,
        "dispatches.html",
        title="Dispatches",
        page=page,
        f=f,
        states=DISPATCH_STATES,
        priorities=PRIORITIES,
        since=SINCE,
        live=True,
        status=422 if error else 200,
        error=error,
    )


async def runs(ui: Ui, request: Request, s: Session) -> Response:
    f, error = _filters(request)
    if not error and f.get("state") and f["state"] not in RUN_STATES:
        error = f"state: expected one of {', '.join(RUN_STATES)}"
    page = Page(rows=[])
    if not error:
        page = await ui.rt.store.read(
            _q(ui).run_page,
            job_id=await _job_id(ui, f.get("job")),
            status=f.get("state"),
            agent=f.get("agent"),
            since=time.time() - SINCE[f["since"]] if "since" in f else None,
            before=f.get("before"),
        )
    return ui.render(
        request,
        s,
        "runs.html",
        title="Runs",
        page=page,
        f=f,
        states=RUN_STATES,
        priorities=(),
        since=SINCE,
        live=True,
        status=422 if error else 200,
        error=error,
    )


async def run(ui: Ui, request: Request, s: Session) -> Response:
    run_id = int(request.path_params["id"])
    try:
        r = await ui.rt.run(run_id)
    except NotFound:
        return ui.render(
            request, s, "error.html", title="Not found", status=404, error=f"no run {run_id}"
        )
    attempts = [r]
    dispatch = None
    if r.dispatch_id is not None:
        attempts = await ui.rt.store.read(_q(ui).run_attempts, r.dispatch_id)
        dispatch = await ui.rt.store.dispatch(r.dispatch_id)
    files = {k: v for k, v in (r.details or {}).items() if k.endswith("_path") and v}
    return ui.render(
        request,
        s,
        "run.html",
        title=f"Run {run_id}",
        run=r,
        attempts=attempts,
        dispatch=dispatch,
        files=files,
        live=r.status == "running",
    )


async def dispatch(ui: Ui, request: Request, s: Session) -> Response:
    dispatch_id = int(request.path_params["id"])
    d = await ui.rt.store.dispatch(dispatch_id)
    if d is None:
        return ui.render(
            request,
            s,
            "error.html",
            title="Not found",
            status=404,
            error=f"no dispatch {dispatch_id}",
        )
    attempts = await ui.rt.store.read(_q(ui).run_attempts, dispatch_id)
    return ui.render(
        request,
        s,
        "dispatch.html",
        title=f"Dispatch {dispatch_id}",
        d=d,
        attempts=attempts,
        live=d.status not in ("done", "dead", "cancelled"),
    )


async def dead(ui: Ui, request: Request, s: Session) -> Response:
    f, _ = _filters(request)  # a bad cursor is ignored here: the newest page
    page = await ui.rt.store.read(
        _q(ui).dispatch_page,
        status="dead",
        job_id=await _job_id(ui, f.get("job")),
        before=f.get("before"),
    )
    return ui.render(request, s, "dead.html", title="Dead letters", page=page, f=f, live=True)


async def approvals(ui: Ui, request: Request, s: Session) -> Response:
    pending = await ui.rt.approvals(status="pending", limit=100)
    ids = {a.dispatch_id for a in pending}
    context = {i: await ui.rt.store.dispatch(i) for i in ids}
    return ui.render(
        request,
        s,
        "approvals.html",
        title="Approvals",
        pending=pending,
        context=context,
        live=True,
    )


async def agents(ui: Ui, request: Request, s: Session) -> Response:
    rows = await ui.rt.agents()
    return ui.render(request, s, "agents.html", title="Agents", agents=rows, now=time.time())


async def schedules(ui: Ui, request: Request, s: Session) -> Response:
    now = time.time()
    rows = sorted(
        (r for r in await ui.rt.list_jobs() if r.next_run_at is not None and r.spec.enabled),
        key=lambda r: r.next_run_at,
    )
    due = [r for r in rows if r.next_run_at <= now + 86400]
    soonest = due[:SCHEDULED_JOBS]
    hour: list[tuple[float, Any]] = []
    day: list[tuple[float, Any]] = []
    for row in soonest:
        for t in _fires(row, now, 50, horizon=86400.0):
            (hour if t <= now + 3600 else day).append((t, row))
    hour.sort(key=lambda x: x[0])
    day.sort(key=lambda x: x[0])
    skipped = await ui.rt.store.read(_q(ui).skipped_slots, limit=50)
    return ui.render(
        request,
        s,
        "schedules.html",
        title="Schedules",
        hour=hour,
        day=day[:200],
        skipped=skipped,
        live=True,
        more=len(due) > len(soonest),
    )


def slot_of(run: Any) -> str:
    slot = (run.details or {}).get("slot")
    if slot is None:
        return "-"
    return datetime.fromtimestamp(float(slot), UTC).isoformat(timespec="seconds")


async def login_page(ui: Ui, request: Request) -> Response:
    return ui.render(
        request,
        ui.keeper.of(request),
        "login.html",
        title="Log in",
        next=request.query_params.get("next", ""),
        open=ui.ctx.auth.open,
    )


PAGES = {
    "": overview,
    "/jobs": jobs,
    "/jobs/{name:path}": job,
    "/dispatches": dispatches,
    "/dispatches/{id:int}": dispatch,
    "/runs": runs,
    "/runs/{id:int}": run,
    "/dead": dead,
    "/approvals": approvals,
    "/agents": agents,
    "/schedules": schedules,
}
