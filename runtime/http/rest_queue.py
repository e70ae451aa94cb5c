"""``/api/v1/dispatches``, ``/api/v1/runs``, ``/api/v1/dead``: enqueue (one or a batch),
look up, list (keyset pages) and cancel dispatches; runs with their attempts; dead
letters listed, retried and purged. On ``Runtime``'s jobs and queries APIs.

A batch answers 200 with one result per item, in order: an ``id`` or an ``error``
(``{"status", "message", "field"}``). Each item is decoded alone, as the body of
``POST /api/v1/dispatches`` is, so an item that does not decode (a number out of range,
nested too deeply, not an object) gets its own error and the others still go in. The
items that pass their checks are enqueued together in one transaction; when that
transaction refuses something only a write can find, each item is enqueued alone so
that the good ones still go in.
"""

from __future__ import annotations

from typing import Any

from shepherd.runtime.http.answers import (
    BatchItem,
    BatchResult,
    Cancelled,
    Count,
    DispatchPage,
    Enqueued,
    Ids,
    RunDetail,
    RunPage,
)
from shepherd.runtime.http.api import (
    ApiError,
    ApiRequest,
    Endpoint,
    ErrorBody,
    decode_body,
    status_of,
)
from shepherd.runtime.http.schemas import (
    BatchBody,
    CancelQuery,
    DeadQuery,
    DispatchesQuery,
    EnqueueBody,
    PurgeBody,
    RetryManyBody,
    RunsQuery,
    decode_cursor,
    page,
    path_id,
)
from shepherd.runtime.jobs import check_enqueue
from shepherd.store.errors import Conflict, NotFound, ShepherdError
from shepherd.store.models import Dispatch, EnqueueRequest, Run

__all__ = ["ENDPOINTS", "enqueue_kwargs"]

_MANY = 1_000_000
_FINAL = ("done", "dead", "cancelled")


def enqueue_kwargs(body: EnqueueBody, where: str = "") -> dict[str, Any]:
    """``rt.enqueue``'s keywords; 422 naming the field when both forms of a time are given."""
    prefix = f"{where}." if where else ""
    for absolute, relative in (("not_before", "delay"), ("expires_at", "expires_in")):
        if getattr(body, absolute) is not None and getattr(body, relative) is not None:
            raise ApiError(422, f"{absolute} and {relative} exclude each other",
                           field=f"{prefix}{relative}")  # fmt: skip
    return {f: getattr(body, f) for f in body.__struct_fields__ if f != "job"}


# -- dispatches -------------------------------------------------------------------------


async def enqueue(req: ApiRequest) -> Any:
    body: EnqueueBody = req.body
    kw = enqueue_kwargs(body)
    known = 0  # the dispatch its idempotency key is bound to already, if any
    if body.idempotency_key is not None:
        row = await req.rt.get_job(body.job)
        known = await req.rt.store.dispatch_by_key(row.id, body.idempotency_key)
    dispatch_id = await req.rt.enqueue(body.job, **kw)
    return Enqueued(id=dispatch_id, job=body.job, duplicate=known == dispatch_id)


async def enqueue_batch(req: ApiRequest) -> Any:
    rt = req.rt
    results: list[BatchItem] = [BatchItem(index=i) for i in range(len(req.body.items))]
    good: list[tuple[int, EnqueueBody]] = []
    for i, raw in enumerate(req.body.items):
        try:
            item = decode_body(bytes(raw), EnqueueBody)  # as POST /api/v1/dispatches does
            enqueue_kwargs(item, f"items[{i}]")
            good.append((i, item))
        except ApiError as exc:
            results[i] = BatchItem(index=i, error=_error(exc, f"items[{i}]"))
    try:  # the good items in one transaction
        ids = await rt.enqueue_many([_request(item, rt.clock.wall()) for _, item in good])
        for (i, _), got in zip(good, ids, strict=True):
            results[i] = BatchItem(index=i, id=got)
    except ShepherdError:  # something only a write finds: each alone, so the rest go in
        for i, item in good:
            try:
                got = await rt.enqueue(item.job, **enqueue_kwargs(item))
                results[i] = BatchItem(index=i, id=got)
            except ShepherdError as exc:
                results[i] = BatchItem(index=i, error=_error(exc, f"items[{i}]"))
    failed = sum(1 for r in results if r.error is not None)
    return BatchResult(results=results, enqueued=len(results) - failed, failed=failed)


def _request(item: EnqueueBody, now: float) -> EnqueueRequest:
    """The ``EnqueueRequest`` of an item, its relative times made absolute."""
    check_enqueue(EnqueueRequest(job=item.job), delay=item.delay, expires_in=item.expires_in)
    kw = enqueue_kwargs(item)
    delay, expires_in = kw.pop("delay"), kw.pop("expires_in")
    if delay is not None:
        kw["not_before"] = now + delay
    if expires_in is not None:
        kw["expires_at"] = now + expires_in
    req = EnqueueRequest(job=item.job, **kw)
    check_enqueue(req)
    return req


def _error(exc: BaseException, where: str) -> ErrorBody:
    status, message, field = status_of(exc)
    if field is not None and not field.startswith(where):
        field = f"{where}.{field}"
    return ErrorBody(status=status, message=message, field=field or where)


async def get_dispatch(req: ApiRequest) -> Any:
    return await req.rt.dispatch(path_id(req.params))


async def list_dispatches(req: ApiRequest) -> Any:
    q: DispatchesQuery = req.query
    rows: list[Dispatch] = await req.rt.dispatches(
        status=q.state, job=q.job, limit=q.limit + 1, before=decode_cursor(q.cursor),
        priority=q.priority, agent=q.agent, since=q.since, until=q.until,
    )  # fmt: skip
    items, cursor = page(rows, q.limit)
    return DispatchPage(items=items, next_cursor=cursor)


async def cancel(req: ApiRequest) -> Any:
    dispatch_id = path_id(req.params)
    before = await req.rt.dispatch(dispatch_id)  # 404 first
    if before.status in _FINAL:
        raise Conflict(f"dispatch {dispatch_id} already ended ({before.status}); nothing to cancel")
    status = await req.rt.cancel(dispatch_id, cascade=req.query.cascade)
    if status is None:
        raise NotFound(f"no dispatch {dispatch_id}")
    if status in _FINAL and status != "cancelled":  # it ended meanwhile
        raise Conflict(f"dispatch {dispatch_id} already ended ({status}); nothing to cancel")
    if status == "running":
        return Cancelled(id=dispatch_id, result="cancel_requested")
    return Cancelled(id=dispatch_id, result="cancelled")


# -- runs -------------------------------------------------------------------------------


async def list_runs(req: ApiRequest) -> Any:
    q: RunsQuery = req.query
    rows: list[Run] = await req.rt.runs(
        job=q.job, status=q.state, dispatch_id=q.dispatch_id, limit=q.limit + 1,
        before=decode_cursor(q.cursor), agent=q.agent, since=q.since, until=q.until,
    )  # fmt: skip
    items, cursor = page(rows, q.limit)
    return RunPage(items=items, next_cursor=cursor)


async def get_run(req: ApiRequest) -> Any:
    run: Run = await req.rt.run(path_id(req.params))
    attempts: list[Run] = []
    if run.dispatch_id is not None:
        attempts = await req.rt.runs(dispatch_id=run.dispatch_id, limit=1000)
    return RunDetail(run=run, attempts=attempts)


# -- dead letters -------------------------------------------------------------------------


async def list_dead(req: ApiRequest) -> Any:
    q: DeadQuery = req.query
    before = decode_cursor(q.cursor)
    rows = await req.rt.dead_letters(job=q.job, limit=q.limit + 1, before=before)
    items, cursor = page(rows, q.limit)
    return DispatchPage(items=items, next_cursor=cursor)


async def _dead(req: ApiRequest, dispatch_id: int) -> None:
    d = await req.rt.dispatch(dispatch_id)
    if d.status != "dead":
        raise NotFound(f"dispatch {dispatch_id} is not a dead letter ({d.status})")


async def retry_one(req: ApiRequest) -> Any:
    dispatch_id = path_id(req.params)
    await _dead(req, dispatch_id)
    return Ids(ids=await req.rt.retry_dead([dispatch_id]))


async def retry_many(req: ApiRequest) -> Any:
    body: RetryManyBody = req.body
    if (body.ids is not None) == body.all:
        raise ApiError(422, "give ids or all (not both)", field="ids")
    if body.job is not None and not body.all:
        raise ApiError(422, "job goes with all", field="job")
    ids = body.ids
    if ids is None:
        ids = sorted(d.id for d in await req.rt.dead_letters(job=body.job, limit=_MANY))
    done = await req.rt.retry_dead(ids)
    return Ids(ids=done, not_found=[i for i in ids if i not in set(done)])


async def purge_one(req: ApiRequest) -> Any:
    dispatch_id = path_id(req.params)
    await _dead(req, dispatch_id)
    return Count(count=await req.rt.purge_dead([dispatch_id]))


async def purge(req: ApiRequest) -> Any:
    body: PurgeBody = req.body
    if sum((body.ids is not None, body.older_than is not None, body.all)) != 1:
        raise ApiError(422, "give exactly one of ids, older_than, all", field="ids")
    missing: list[int] = []
    for i in body.ids or ():
        d = await req.rt.store.dispatch(i)
        if d is None or d.status != "dead":
            missing.append(i)
    n = await req.rt.purge_dead(body.ids, older_than=body.older_than)
    return Count(count=n, not_found=missing)


_D, _R, _X = ("dispatches",), ("runs",), ("dead letters",)
_ID = (404,)
ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/api/v1/dispatches", enqueue, "agent", "enqueue one dispatch",
             body=EnqueueBody, response=Enqueued, status=201, tags=_D, errors=_ID),
    Endpoint("POST", "/api/v1/dispatches/batch", enqueue_batch, "agent",
             "enqueue many; one result per item (an id or an error)",
             body=BatchBody, response=BatchResult, tags=_D),
    Endpoint("GET", "/api/v1/dispatches", list_dispatches, summary="dispatches, newest first",
             query=DispatchesQuery, response=DispatchPage, tags=_D),
    Endpoint("GET", "/api/v1/dispatches/{id}", get_dispatch, summary="one dispatch",
             response=Dispatch, tags=_D, errors=_ID),
    Endpoint("POST", "/api/v1/dispatches/{id}/cancel", cancel, "agent",
             "cancel a queued or running dispatch (409 once it ended)",
             query=CancelQuery, response=Cancelled, tags=_D, errors=(404, 409)),
    Endpoint("GET", "/api/v1/runs", list_runs, summary="runs, newest first",
             query=RunsQuery, response=RunPage, tags=_R),
    Endpoint("GET", "/api/v1/runs/{id}", get_run, summary="a run with its output and attempts",
             response=RunDetail, tags=_R, errors=_ID),
    Endpoint("GET", "/api/v1/dead", list_dead, summary="dead letters, newest first",
             query=DeadQuery, response=DispatchPage, tags=_X),
    Endpoint("POST", "/api/v1/dead/retry", retry_many, "admin",
             "queue dead letters again (ids, or all)",
             body=RetryManyBody, response=Ids, tags=_X),
    Endpoint("POST", "/api/v1/dead/purge", purge, "admin",
             "delete dead letters (ids, older_than or all)",
             body=PurgeBody, response=Count, tags=_X),
    Endpoint("POST", "/api/v1/dead/{id}/retry", retry_one, "admin",
             "queue one dead letter again with fresh attempts",
             response=Ids, tags=_X, errors=_ID),
    Endpoint("DELETE", "/api/v1/dead/{id}", purge_one, "admin", "delete one dead letter",
             response=Count, tags=_X, errors=_ID),
]  # fmt: skip
