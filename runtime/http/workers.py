"""External workers over HTTP: claim a run under a lease, renew it, report on it.

    POST /api/v1/workers/claim                      {capabilities, wait, max: 1}
        → 200 {lease: {run_id, dispatch_id, job, payload, attempt, token, deadline, …}}
        → 204 nothing came within ``wait`` (capped by ``[http] long_poll_max``), or the
          daemon is stopping
    POST /api/v1/workers/leases/{run_id}/heartbeat  {token}                → new deadline
    POST /api/v1/workers/leases/{run_id}/progress   {token, progress?, message?}
    POST /api/v1/workers/leases/{run_id}/complete   {token, result}        → run ``ok``
    POST /api/v1/workers/leases/{run_id}/fail       {token, error, retryable}

Scope ``agent``; the worker is the request's agent (``X-Agent-ID``; an agent token's
own). The lease board is the ``external`` executor's (``actors/executors/external.py``).
Answers: a ``result`` nested deeper than ``store.bounds.MAX_DEPTH`` → 422 naming it, the
lease untouched; a token that is not ``<run_id>.<32 hex>`` (or names another run) → 422; no
such run → 404; a lease held by another agent → 403; a stale token (the lease expired,
the run was retried, cancelled, or finalized by recovery after a restart) → 409, and
the refusal is recorded (the board's ``stale`` counter, a log line, a ``stale`` lease
event, a note on the dispatch's current run). A worker that is a registered agent counts
as alive for the registry's liveness while it claims and reports (``note_alive``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from starlette.responses import Response
from starlette.routing import BaseRoute

from shepherd.actors.executors.external import ExternalExecutor
from shepherd.actors.executors.leases import Lease, LeaseBoard, NotHolder, UnknownLease
from shepherd.runtime.http.api import ApiError, ApiRequest, Endpoint
from shepherd.runtime.http.context import HttpContext
from shepherd.store.bounds import storable
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import normalize_capabilities

__all__ = ["ENDPOINTS", "board_of", "lease_out", "note_alive", "routes"]

_TOKEN = re.compile(r"^(\d{1,19})\.[0-9a-f]{32}$")
_TAGS = ("workers",)
_ALIVE_EVERY = 10.0  # seconds between two registry heartbeats of one worker agent


class ClaimBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    capabilities: list[str] | None = None  # what the worker can do (None: it does not say)
    wait: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0  # seconds to long-poll
    max: Annotated[int, msgspec.Meta(ge=1, le=1)] = 1  # leases per claim (one for now)


class LeaseOut(msgspec.Struct, kw_only=True):
    run_id: int
    dispatch_id: int
    job: str
    payload: Any
    attempt: int
    token: str  # the fencing token: every report on this run carries it
    deadline: float  # epoch seconds: renew (heartbeat / progress) before it
    idle_timeout: float  # seconds each renewal buys
    agent: str  # the agent holding it


class ClaimAnswer(msgspec.Struct, kw_only=True):
    lease: LeaseOut


class TokenBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: str


class ProgressBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: str
    progress: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    message: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class CompleteBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: str
    result: Any = None


class FailBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: str
    error: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    retryable: bool = True


class LeaseState(msgspec.Struct, kw_only=True):
    run_id: int
    state: str  # renewed | completed | failed
    deadline: float | None = None  # epoch seconds, while the lease lives


def board_of(rt: Any) -> LeaseBoard:
    ex = rt.executors.get("external")
    if not isinstance(ex, ExternalExecutor):
        raise ApiError(503, "this runtime has no external executor")
    return ex.board


def lease_out(board: LeaseBoard, lease: Lease) -> LeaseOut:
    return LeaseOut(
        run_id=lease.run_id,
        dispatch_id=lease.dispatch_id,
        job=lease.job,
        payload=lease.payload,
        attempt=lease.attempt,
        token=lease.token,
        deadline=board.deadline_wall(lease),
        idle_timeout=lease.idle,
        agent=lease.holder or "",
    )


def _caps(values: list[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(normalize_capabilities(values, field="capabilities"))


async def note_alive(req: ApiRequest) -> None:
    """A registered agent that claims or reports is alive: seen by the agents registry
    (README "Agents": liveness), at most every ``_ALIVE_EVERY`` seconds per agent; an
    offline one is ready again, a degraded one stays degraded (``AgentsApi.agent_seen``:
    claiming is no proof that its runs stopped failing)."""
    agent = req.principal.acting
    if not agent:
        return
    seen: dict[str, float] = req.ctx.state.setdefault("workers.alive", {})
    now = req.rt.clock.now()
    if now - seen.get(agent, -_ALIVE_EVERY) < _ALIVE_EVERY:
        return
    if len(seen) > 10_000:  # ids that are no registered agent: forget them all
        seen.clear()
    seen[agent] = now
    try:
        await req.rt.agent_seen(agent)
    except NotFound:
        pass  # a worker that is not in the registry


async def claim(req: ApiRequest) -> Any:
    body: ClaimBody = req.body
    await note_alive(req)
    board = board_of(req.rt)
    wait = min(body.wait, float(req.ctx.config.long_poll_max))
    lease = await board.claim(req.principal.acting, _caps(body.capabilities), wait)
    if lease is None:
        return Response(status_code=204)
    return ClaimAnswer(lease=lease_out(board, lease))


async def held(req: ApiRequest, token: str, kind: str) -> tuple[LeaseBoard, Lease]:
    """The lease ``token`` holds on the path's run, or the error to answer with."""
    run_id = int(req.params["run_id"])
    m = _TOKEN.match(token)
    if m is None:
        raise ConfigError("expected a lease token <run_id>.<32 hex digits>", field="token")
    if int(m.group(1)) != run_id:
        raise ConfigError(f"this token is not for run {run_id}", field="token")
    board = board_of(req.rt)
    agent = req.principal.acting
    try:
        lease = board.check(run_id, token, agent, kind)
    except NotHolder as exc:
        raise ApiError(403, str(exc)) from None
    except UnknownLease:
        run = await req.rt.store.run(run_id)
        if run is None:
            raise ApiError(404, f"no run {run_id}") from None
        why = f"run {run_id} is {run.status} and not leased by this daemon"
        raise board.stale(run_id, run.dispatch_id, agent, kind, why) from None
    await note_alive(req)
    return board, lease


async def heartbeat(req: ApiRequest) -> Any:
    board, lease = await held(req, req.body.token, "heartbeat")
    board.renew(lease)
    return LeaseState(run_id=lease.run_id, state="renewed", deadline=board.deadline_wall(lease))


async def progress(req: ApiRequest) -> Any:
    body: ProgressBody = req.body
    board, lease = await held(req, body.token, "progress")
    board.progress(lease, body.progress, body.message)
    return LeaseState(run_id=lease.run_id, state="renewed", deadline=board.deadline_wall(lease))


async def complete(req: ApiRequest) -> Any:
    body: CompleteBody = req.body
    result = storable(body.result, field="result")  # 422 before the lease is looked at
    board, lease = await held(req, body.token, "complete")
    board.complete(lease, result)
    return LeaseState(run_id=lease.run_id, state="completed")


async def fail(req: ApiRequest) -> Any:
    body: FailBody = req.body
    board, lease = await held(req, body.token, "fail")
    board.fail(lease, body.error, body.retryable)
    return LeaseState(run_id=lease.run_id, state="failed")


def routes(ctx: HttpContext) -> list[BaseRoute]:
    """No routes of its own: it connects the lease board's events to the event stream
    (``ctx.state["events"]``, when the events module serves one)."""

    def publish(kind: str, data: dict[str, Any]) -> None:
        events = ctx.state.get("events")
        if events is not None:
            events.publish(kind, data)

    ex = ctx.rt.executors.get("external")
    if isinstance(ex, ExternalExecutor):
        ex.board.listeners.append(publish)
    return []


_LEASE = "/api/v1/workers/leases/{run_id:int}"
_ERR = (403, 404, 409)
ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/api/v1/workers/claim", claim, scope="agent", body=ClaimBody,
             response=ClaimAnswer, tags=_TAGS, name="claimLease", errors=(204,),
             summary="Claim one run of the external executor (long-poll up to wait s)"),
    Endpoint("POST", f"{_LEASE}/heartbeat", heartbeat, scope="agent", body=TokenBody,
             response=LeaseState, tags=_TAGS, errors=_ERR, name="renewLease",
             summary="Renew a lease (a new deadline)"),
    Endpoint("POST", f"{_LEASE}/progress", progress, scope="agent", body=ProgressBody,
             response=LeaseState, tags=_TAGS, errors=_ERR, name="leaseProgress",
             summary="Report progress (0-100) or a message; renews the lease"),
    Endpoint("POST", f"{_LEASE}/complete", complete, scope="agent", body=CompleteBody,
             response=LeaseState, tags=_TAGS, errors=_ERR, name="completeLease",
             summary="The run succeeded with this result"),
    Endpoint("POST", f"{_LEASE}/fail", fail, scope="agent", body=FailBody,
             response=LeaseState, tags=_TAGS, errors=_ERR, name="failLease",
             summary="The run failed (retried unless retryable is false)"),
]  # fmt: skip
