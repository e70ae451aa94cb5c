"""A Python client of shepherd's REST API (README "REST resources").

    async with Client("http://127.0.0.1:8600", token=os.environ["OPS_TOKEN"]) as c:
        dispatch_id = await c.enqueue("nightly", {"full": True}, priority="high")
        d = await c.dispatch(dispatch_id)

The answers are the same msgspec Structs the Runtime API returns (``Dispatch``,
``Run``, ``Approval``...). An error answer is raised as the shepherd error it stands
for: 404 ``NotFound``, 409 ``Conflict``, 400 / 422 ``ConfigError`` (with ``field``),
503 / 507 ``StoreError``; 401 / 403 / 413 / 429 and anything else ``ApiError`` (with
``status``, ``field`` and, on 429, ``retry_after``). One ``httpx.AsyncClient`` with
keep-alive serves every call. The module is long because it has one method per call
of the API, each with the Runtime API's name and arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from shepherd.store.errors import ConfigError, Conflict, NotFound, ShepherdError, StoreError
from shepherd.store.models import (
    Agent,
    Approval,
    Dispatch,
    JobRow,
    Message,
    Run,
    decode_spec,
    to_builtins,
)

__all__ = ["ApiError", "Client", "Page"]

T = TypeVar("T")


class ApiError(ShepherdError):
    """An error answer with no closer shepherd error (401, 403, 413, 429, 5xx)."""

    def __init__(
        self, status: int, message: str, field: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.field = field
        self.retry_after = retry_after


class Page(msgspec.Struct, frozen=True):
    """One page of a listing; ``next_cursor`` continues it (None: the last page)."""

    items: list[Any]
    next_cursor: str | None = None


class _Error(msgspec.Struct):
    status: int
    message: str
    field: str | None = None


class _Envelope(msgspec.Struct):
    error: _Error


def error_of(resp: httpx.Response) -> Exception:
    """The shepherd error an error answer stands for."""
    try:
        err = msgspec.json.decode(resp.content, type=_Envelope).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        err = _Error(resp.status_code, resp.text[:200] or resp.reason_phrase)
    message = err.message
    if err.field and message.startswith(f"{err.field}: "):
        message = message.removeprefix(f"{err.field}: ")
    status = resp.status_code
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status in (400, 422):
        return ConfigError(message, field=err.field)
    if status in (503, 507):
        return StoreError(message)
    retry = resp.headers.get("retry-after")
    after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    return ApiError(status, message, err.field, after)


def _params(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kw.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = value
    return out


class Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        agent: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if agent:
            headers["X-Agent-ID"] = agent
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"<Client {self.url}>"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        type: Any = Any,
    ) -> Any:
        """One call; the answer decoded as ``type``, an error answer raised (``call``:
        the same, typed)."""
        content = msgspec.json.encode(json) if json is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        resp = await self._http.request(
            method, f"/api/v1{path}", content=content, params=params, headers=headers
        )
        if resp.status_code >= 400:
            raise error_of(resp)
        return msgspec.json.decode(resp.content, type=type)

    async def call(
        self, method: str, path: str, type_: type[T], *, json: Any = None, **params: Any
    ) -> T:
        got: T = await self.request(method, path, json=json, params=_params(**params), type=type_)
        return got

    async def _page(self, path: str, type_: Any, **query: Any) -> Page:
        got = await self.request("GET", path, params=_params(**query), type=dict[str, Any])
        items = msgspec.convert(got["items"], list[type_])
        return Page(items, got.get("next_cursor"))

    # -- jobs ------------------------------------------------------------------------

    async def jobs(self) -> list[JobRow]:
        got = await self.request("GET", "/jobs", type=list[dict[str, Any]])
        return [_job(j) for j in got]

    async def job(self, name: str) -> JobRow:
        return _job(await self.request("GET", f"/jobs/{_seg(name)}", type=dict[str, Any]))

    async def add_job(self, spec: dict[str, Any] | msgspec.Struct) -> JobRow:
        body = spec if isinstance(spec, dict) else _builtins(spec)
        return _job(await self.request("POST", "/jobs", json=body, type=dict[str, Any]))

    async def update_job(self, name: str, /, **changes: Any) -> JobRow:
        return _job(
            await self.request("PATCH", f"/jobs/{_seg(name)}", json=changes, type=dict[str, Any])
        )

    async def remove_job(self, name: str) -> None:
        await self.request("DELETE", f"/jobs/{_seg(name)}")

    async def enable(self, name: str) -> JobRow:
        return _job(await self.request("POST", f"/jobs/{_seg(name)}/enable", type=dict[str, Any]))

    async def disable(self, name: str) -> JobRow:
        return _job(await self.request("POST", f"/jobs/{_seg(name)}/disable", type=dict[str, Any]))

    async def run_now(self, name: str, payload: dict[str, Any] | None = None) -> int:
        got = await self.request("POST", f"/jobs/{_seg(name)}/run", json={"payload": payload})
        return int(got["id"])

    async def next_fires(self, name: str, n: int = 5) -> list[float]:
        got = await self.request("GET", f"/jobs/{_seg(name)}/next", params={"count": n})
        return [float(x) for x in got["fires"]]

    # -- dispatches ------------------------------------------------------------------

    async def enqueue(self, job: str, payload: dict[str, Any] | None = None, **kw: Any) -> int:
        """``kw``: priority, not_before, delay, expires_at, expires_in, max_attempts,
        idempotency_key, capabilities, owner (as ``Runtime.enqueue``)."""
        body = {"job": job, "payload": payload, **{k: v for k, v in kw.items() if v is not None}}
        got = await self.request("POST", "/dispatches", json=body)
        return int(got["id"])

    async def enqueue_many(self, items: Sequence[dict[str, Any]]) -> list[int | Exception]:
        """Each item ``{"job": ..., "payload": ..., ...}``; per item its dispatch id or
        the error it got (the other items are enqueued all the same)."""
        got = await self.request("POST", "/dispatches/batch", json={"items": list(items)})
        out: list[int | Exception] = []
        for r in got["results"]:
            if r.get("error") is None:
                out.append(int(r["id"]))
                continue
            e = r["error"]
            body = msgspec.json.encode({"error": e})
            out.append(error_of(httpx.Response(e["status"], content=body)))
        return out

    async def dispatch(self, dispatch_id: int) -> Dispatch:
        return await self.call("GET", f"/dispatches/{dispatch_id}", Dispatch)

    async def dispatches(
        self,
        *,
        job: str | None = None,
        state: str | Sequence[str] | None = None,
        priority: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        states = [state] if isinstance(state, str) else state
        return await self._page(
            "/dispatches", Dispatch, job=job, state=states, priority=priority, agent=agent,
            since=since, until=until, limit=limit, cursor=cursor,
        )  # fmt: skip

    async def cancel(self, dispatch_id: int, *, cascade: bool = False) -> str:
        """``cancelled`` or ``cancel_requested`` (running); ``Conflict`` once it ended."""
        got = await self.request(
            "POST", f"/dispatches/{dispatch_id}/cancel", params=_params(cascade=cascade)
        )
        return str(got["result"])

    # -- runs ---------------------------------------------------------------------------

    async def runs(
        self,
        *,
        job: str | None = None,
        state: str | Sequence[str] | None = None,
        dispatch_id: int | None = None,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        states = [state] if isinstance(state, str) else state
        return await self._page(
            "/runs", Run, job=job, state=states, dispatch_id=dispatch_id, agent=agent,
            since=since, until=until, limit=limit, cursor=cursor,
        )  # fmt: skip

    async def run(self, run_id: int) -> Run:
        got = await self.request("GET", f"/runs/{run_id}", type=dict[str, Any])
        return msgspec.convert(got["run"], Run)

    async def attempts(self, run_id: int) -> list[Run]:
        """Every run of ``run_id``'s dispatch, newest first."""
        got = await self.request("GET", f"/runs/{run_id}", type=dict[str, Any])
        return msgspec.convert(got["attempts"], list[Run])

    # -- dead letters ---------------------------------------------------------------------

    async def dead_letters(
        self, *, job: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page:
        return await self._page("/dead", Dispatch, job=job, limit=limit, cursor=cursor)

    async def retry_dead(
        self, ids: Sequence[int] | None = None, *, all: bool = False, job: str | None = None
    ) -> list[int]:
        body: dict[str, Any] = {"all": all, "job": job}
        if ids is not None:
            body["ids"] = list(ids)
        got = await self.request("POST", "/dead/retry", json=body)
        return [int(i) for i in got["ids"]]

    async def purge_dead(
        self,
        ids: Sequence[int] | None = None,
        *,
        older_than: float | None = None,
        all: bool = False,
    ) -> int:
        body: dict[str, Any] = {"all": all, "older_than": older_than}
        if ids is not None:
            body["ids"] = list(ids)
        got = await self.request("POST", "/dead/purge", json=body)
        return int(got["count"])

    # -- approvals ------------------------------------------------------------------------

    async def approvals(
        self, status: str | None = None, job: str | None = None, *, limit: int = 100
    ) -> list[Approval]:
        return await self.call(
            "GET", "/approvals", list[Approval], status=status, job=job, limit=limit
        )

    async def approval(self, approval_id: int) -> Approval:
        return await self.call("GET", f"/approvals/{approval_id}", Approval)

    async def approve(self, approval_id: int, by: str | None = None) -> Approval:
        path = f"/approvals/{approval_id}/approve"
        return await self.call("POST", path, Approval, json={"by": by})

    async def reject(self, approval_id: int, reason: str, by: str | None = None) -> Approval:
        path = f"/approvals/{approval_id}/reject"
        return await self.call("POST", path, Approval, json={"reason": reason, "by": by})

    # -- agents and messages ------------------------------------------------------------

    async def agents(self) -> list[Agent]:
        return await self.call("GET", "/agents", list[Agent])

    async def agent(self, agent_id: str) -> Agent:
        return await self.call("GET", f"/agents/{_seg(agent_id)}", Agent)

    async def send_message(self, to_agent: str, body: str, **kw: Any) -> int:
        got = await self.request(
            "POST", "/messages", json={"to_agent": to_agent, "body": body, **kw}
        )
        return int(got["id"])

    async def messages(self, **query: Any) -> list[Message]:
        return await self.call("GET", "/messages", list[Message], **query)

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """``GET /status`` as it answers: ``shepherd status --json``'s data with epoch
        times, its later sections under ``extra``, and the live ``breakers`` and
        ``actors`` (README "REST resources")."""
        got: dict[str, Any] = await self.request("GET", "/status", type=dict[str, Any])
        return got

    async def stats(self) -> dict[str, Any]:
        got: dict[str, Any] = await self.request("GET", "/stats", type=dict[str, Any])
        return got

    # @@client-methods@@

    def leases(self, capabilities: list[str] | None = None, *, wait: float = 30.0) -> Any:
        """Work runs of the ``external`` executor as this client's agent (heartbeats
        included; ``runtime/worker_client.py``)::

            async with c.leases(["gpu"]) as leases:
                async for lease in leases:
                    await lease.complete({"ok": True})
        """
        from shepherd.runtime.worker_client import Leases, WorkerClient

        return Leases(WorkerClient(http=self._http), capabilities, wait=wait)


def _seg(name: str) -> str:
    """A name as one path segment: every ``/`` as ``%2F``, so that a job named
    ``x/run`` is never read as job ``x``'s run action (``runtime.http.api``)."""
    return quote(name, safe="")


def _builtins(spec: msgspec.Struct) -> Any:
    return to_builtins(spec)


def _job(data: dict[str, Any]) -> JobRow:
    return decode_spec(data, JobRow, what="job row")
