"""Dispatch's task API on top of shepherd (SEMANTICS D15; README "Dispatch-compatible
task API").

A task is a dispatch. ``POST /api/v1/tasks`` queues a run of the built-in ad-hoc job
(``dispatch-task``, created on first use; a task with its own ``timeout_seconds`` gets
``dispatch-task:<n>s``), which runs on the ``external`` executor: assignment picks the
agent by the task's ``required_capabilities`` (Dispatch's score), and the run waits on
the lease board for that agent. The agent reports by task id (``/progress``,
``/complete``, ``/fail`` with ``X-Agent-ID``): the report claims the lease of the
task's current run for it when nobody has it yet, then applies (fencing as in
``workers.py``). Dispatch's JSON field names are kept (``task_id``, ``title``,
``owner``, ``assigned_agent``, ``status`` …); states and priority map as
``runtime/http/task_model.py`` says (``task_status``, ``level_of``). Where Dispatch's
admin paths collide with shepherd's REST routes (``/api/v1/stats``,
``/api/v1/agents``) Dispatch's shapes are served under ``/api/v1/tasks/stats`` and
``/api/v1/tasks/agents``. A ``/fail`` answers with the task's state after the report
(``settled``: PENDING when it is retried, else FAILED), as a ``GET`` right after it
does. The module is long because every route of that API is here, each with the checks
of its body and its reports' fencing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from shepherd.actors.executors.leases import Lease, NotHolder
from shepherd.actors.messages import Event, OutcomeEvent
from shepherd.runtime.http.api import ApiError, ApiRequest, Endpoint
from shepherd.runtime.http.task_model import (
    ADHOC_JOB,
    DEFAULT_TIMEOUT,
    STATES,
    CompleteBody,
    CreateTask,
    FailBody,
    PatchTask,
    ProgressBody,
    Stats,
    Task,
    TaskAgent,
    TaskReport,
    TasksQuery,
    is_task_job,
    level_of,
    state_after,
    task_field,
    task_of,
    task_status,
)
from shepherd.runtime.http.workers import board_of, note_alive
from shepherd.store.bounds import MAX_ID, storable
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import Dispatch, JobSpec, RetryPolicy, normalize_capabilities

__all__ = ["ENDPOINTS"]

_TAGS = ("tasks",)
_SETTLE = 10.0  # seconds a report waits for its run's outcome to be committed


def _job_name(timeout: int) -> str:
    return ADHOC_JOB if timeout == DEFAULT_TIMEOUT else f"{ADHOC_JOB}:{timeout}s"


async def _adhoc_job(rt: Any, timeout: int) -> str:
    name = _job_name(timeout)
    if await rt.store.job(name) is None:
        spec = JobSpec(
            name=name,
            executor="external",
            description="Dispatch-compatible tasks (POST /api/v1/tasks)",
            timeout=float(timeout),  # type: ignore[arg-type]
            idle_timeout=float(timeout),  # type: ignore[arg-type]  # Dispatch agents need not beat
            retry=RetryPolicy(max_attempts=4, base=1.0, max_delay=60.0),  # type: ignore[arg-type]
            delivery_guarantee="at-least-once",  # Dispatch puts a lost agent's task back
        )
        await rt.add_job(spec)
    return name


async def _task(req: ApiRequest, d: Dispatch, timeouts: dict[int, float] | None = None) -> Task:
    timeouts = {} if timeouts is None else timeouts
    if d.job_id not in timeouts:
        job = await req.rt.store.job(d.job_id)
        timeouts[d.job_id] = float(job.spec.timeout if job is not None else DEFAULT_TIMEOUT)
    return task_of(d, board_of(req.rt).of_dispatch(d.id), timeouts[d.job_id])


def _task_id(req: ApiRequest) -> int:
    raw = req.params["id"]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise ApiError(400, f"invalid task id {raw!r}", field="id")
    return int(raw)


async def new_task(req: ApiRequest) -> Any:
    body: CreateTask = req.body
    caps = normalize_capabilities(body.required_capabilities, field="required_capabilities")
    if body.source not in ("agent", "manual"):
        raise ApiError(422, "expected agent or manual", field="source")
    job = await _adhoc_job(req.rt, body.timeout_seconds)
    owner = body.owner or req.principal.acting or "system"
    payload = {
        "title": body.title,
        "description": body.description,
        "owner": owner,
        "priority": body.priority,
        "payload": body.payload,
        "metadata": body.metadata,
        "source": body.source,
        "parent_task_id": body.parent_task_id,
        "retry_eligible": body.retry_eligible,
    }
    try:
        dispatch_id = await req.rt.enqueue(
            job,
            payload,
            priority=level_of(body.priority),
            max_attempts=body.max_retries + 1 if body.retry_eligible else 1,
            capabilities=caps or None,
            owner=body.owner,
        )
    except ConfigError as exc:
        raise task_field(exc) from None
    return await _task(req, await req.rt.dispatch(dispatch_id))


def _wanted(q: TasksQuery) -> set[str] | None:
    if not q.status:
        return None
    wanted = {s.strip().upper() for s in q.status}
    wanted = {
        "RUNNING" if s == "IN_PROGRESS" else "TIMEOUT" if s == "TIMED_OUT" else s for s in wanted
    }
    bad = sorted(wanted - set(STATES))
    if bad:
        raise ApiError(
            422, f"unknown status {bad[0]}; expected one of {', '.join(STATES)}", field="status"
        )
    return wanted


# the dispatch states a task in each of Dispatch's states can be in
_DISPATCH_STATES = {
    "PENDING": ("queued", "awaiting_approval", "running"),
    "ASSIGNED": ("running",),
    "RUNNING": ("running",),
    "COMPLETED": ("done",),
    "FAILED": ("dead",),
    "TIMEOUT": ("dead",),
    "CANCELLED": ("cancelled",),
}


async def list_tasks(req: ApiRequest) -> Any:
    q: TasksQuery = req.query
    wanted = _wanted(q)
    states = sorted({s for w in wanted for s in _DISPATCH_STATES[w]}) if wanted else None
    agent = q.assigned_agent or q.agent
    rows: list[Dispatch] = []
    for job in await req.rt.list_jobs():
        if is_task_job(job.name):
            rows.extend(await req.rt.dispatches(job=job.name, status=states, limit=1000))
    rows.sort(key=lambda d: d.id, reverse=True)
    out: list[Task] = []
    timeouts: dict[int, float] = {}
    for d in rows:
        t = await _task(req, d, timeouts)
        if wanted is not None and t.status not in wanted:
            continue
        if agent is not None and t.assigned_agent != agent:
            continue
        if q.owner is not None and t.owner != q.owner:
            continue
        if q.source is not None and t.source != q.source:
            continue
        out.append(t)
        if len(out) >= q.limit:
            break
    return out


async def get_task(req: ApiRequest) -> Any:
    return await _task(req, await req.rt.dispatch(_task_id(req)))


async def _lease_for(req: ApiRequest) -> tuple[int, Lease]:
    task_id = _task_id(req)
    board = board_of(req.rt)
    try:
        lease = board.adopt(task_id, req.principal.acting)
    except NotHolder as exc:
        raise ApiError(403, str(exc)) from None
    if lease is None:
        d = await req.rt.store.dispatch(task_id)
        if d is None:
            raise NotFound(f"no task {task_id}")
        status = task_status(d, None)
        raise ApiError(409, f"task {task_id} is {status}: no run of it waits for a report")
    await note_alive(req)
    return task_id, lease


async def task_progress(req: ApiRequest) -> Any:
    body: ProgressBody = req.body
    task_id, lease = await _lease_for(req)
    board_of(req.rt).progress(lease, body.progress, body.message)
    return TaskReport(task_id=str(task_id), status="RUNNING", run_id=lease.run_id)


async def task_complete(req: ApiRequest) -> Any:
    body: CompleteBody = req.body
    result = storable(body.result, field="result")  # 422 before a lease is adopted
    task_id, lease = await _lease_for(req)
    board_of(req.rt).complete(lease, result)
    return TaskReport(task_id=str(task_id), status="COMPLETED", run_id=lease.run_id)


async def settled(req: ApiRequest, task_id: int, lease: Lease, report: Callable[[], None]) -> str:
    """Make ``report`` on ``lease`` and return the task's state once its run's outcome
    is committed (retried: PENDING). Not within ``_SETTLE`` s (a store in trouble):
    its state as the store has it then."""
    heard: list[OutcomeEvent] = []
    done = anyio.Event()

    def outcome(ev: Event) -> None:
        if isinstance(ev, OutcomeEvent) and ev.run_id == lease.run_id:
            heard.append(ev)
            done.set()

    stop = req.rt.events.listen(outcome, OutcomeEvent)
    try:
        report()
        with anyio.CancelScope() as scope:
            req.rt.clock.cancel_at(scope, req.rt.clock.now() + _SETTLE)
            await done.wait()
    finally:
        stop()
    if heard:
        return state_after(heard[0])
    d = await req.rt.dispatch(task_id)
    return task_status(d, board_of(req.rt).of_dispatch(task_id))


async def task_fail(req: ApiRequest) -> Any:
    body: FailBody = req.body
    task_id, lease = await _lease_for(req)
    board = board_of(req.rt)
    status = await settled(
        req, task_id, lease, lambda: board.fail(lease, body.error, body.retry_eligible)
    )
    return TaskReport(task_id=str(task_id), status=status, run_id=lease.run_id)


async def task_stats(req: ApiRequest) -> Any:
    counts = dict.fromkeys(STATES, 0)
    spent: list[float] = []
    for job in await req.rt.list_jobs():
        if not is_task_job(job.name):
            continue
        for d in await req.rt.dispatches(job=job.name, limit=10_000):
            counts[task_status(d, board_of(req.rt).of_dispatch(d.id))] += 1
        for r in await req.rt.runs(job=job.name, status="ok", limit=1000):
            if r.finished_at is not None:
                spent.append((r.finished_at - r.started_at) * 1000.0)
    return Stats(
        total_pending=counts["PENDING"] + counts["ASSIGNED"],
        total_in_progress=counts["RUNNING"],
        total_completed=counts["COMPLETED"],
        total_failed=counts["FAILED"] + counts["TIMEOUT"],
        avg_completion_ms=sum(spent) / len(spent) if spent else 0.0,
    )


async def task_agents(req: ApiRequest) -> Any:
    return [
        TaskAgent(
            name=a.id,
            status=a.status,
            capabilities=list(a.capabilities),
            active_tasks=a.running,
            drained=a.status == "draining",
        )
        for a in await req.rt.agents()
    ]


async def patch_task(req: ApiRequest) -> Any:
    """Cancel a task: its owner (the agent that made it) or an admin."""
    d = await req.rt.dispatch(_task_id(req))
    owner = (d.payload or {}).get("owner") or d.owner
    if req.principal.scope != "admin" and req.principal.acting != owner:
        raise ApiError(403, f"task {d.id} belongs to {owner!r}: only it or an admin cancels it")
    await req.rt.cancel(d.id)
    return await _task(req, await req.rt.dispatch(d.id))


async def drain(req: ApiRequest) -> Any:
    a = await req.rt.drain_agent(req.params["id"])
    return TaskAgent(
        name=a.id, status=a.status, capabilities=list(a.capabilities),
        active_tasks=a.running, drained=True,
    )  # fmt: skip


_T = "/api/v1/tasks"
_ERR = (403, 404, 409)
ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", _T, new_task, scope="agent", body=CreateTask, response=Task,
             status=201, tags=_TAGS, name="createTask",
             summary="Create a Dispatch task (a dispatch of the ad-hoc external job)"),
    Endpoint("GET", _T, list_tasks, query=TasksQuery, response=list[Task], tags=_TAGS,
             name="listTasks", summary="Tasks, newest first (Dispatch's filters)"),
    Endpoint("GET", f"{_T}/stats", task_stats, scope="admin", response=Stats, tags=_TAGS,
             name="taskStats", summary="Dispatch's queue statistics (its GET /api/v1/stats)"),
    Endpoint("GET", f"{_T}/agents", task_agents, scope="admin", response=list[TaskAgent],
             tags=_TAGS, name="taskAgents",
             summary="Dispatch's capability map (its GET /api/v1/agents)"),
    Endpoint("POST", f"{_T}/agents/{{id}}/drain", drain, scope="admin", response=TaskAgent,
             tags=_TAGS, errors=(404,), name="taskDrainAgent",
             summary="Stop assigning to an agent (Dispatch's POST /api/v1/agents/{id}/drain)"),
    Endpoint("GET", f"{_T}/{{id}}", get_task, response=Task, tags=_TAGS, errors=(404,),
             name="getTask", summary="One task"),
    Endpoint("PATCH", f"{_T}/{{id}}", patch_task, scope="agent", body=PatchTask, response=Task,
             tags=_TAGS, errors=(403, 404), name="cancelTask",
             summary="Cancel a task ({status: CANCELLED}); its owner or an admin"),
    Endpoint("POST", f"{_T}/{{id}}/progress", task_progress, scope="agent", body=ProgressBody,
             response=TaskReport, tags=_TAGS, errors=_ERR, name="taskProgress",
             summary="The agent reports progress (ASSIGNED → RUNNING)"),
    Endpoint("POST", f"{_T}/{{id}}/complete", task_complete, scope="agent", body=CompleteBody,
             response=TaskReport, tags=_TAGS, errors=_ERR, name="completeTask",
             summary="The agent reports completion"),
    Endpoint("POST", f"{_T}/{{id}}/fail", task_fail, scope="agent", body=FailBody,
             response=TaskReport, tags=_TAGS, errors=_ERR, name="failTask",
             summary="The agent reports failure (retried while retry_eligible)"),
]  # fmt: skip
