"""A worker for the ``external`` executor, over HTTP (README "External workers and leases").

    async with WorkerClient("http://127.0.0.1:8600", token="...", agent="a1") as client:
        async for lease in client.leases(capabilities=["gpu"]):
            await lease.progress(50)           # heartbeats go on while the body runs
            await lease.complete({"ok": True})   # or: await lease.fail("msg", retryable=True)

``leases`` long-polls ``POST /api/v1/workers/claim`` and yields one ``WorkerLease`` at a
time; a task in the client's task group renews it every ``idle_timeout / 3`` seconds
until it is reported on. A loop body that ends without a report fails the run
(retryable); one that raises leaves the lease to expire, unless it runs inside
``async with lease:`` (which fails the run at once with the exception's text). ``claim``
gets one lease without the loop. A report refused because the lease is stale
(HTTP 409: it expired and the run was retried, or the daemon restarted) raises
``LeaseLost``; other refusals raise ``WorkerError`` with the server's message. The loop
waits out a 429 / 503 (``Retry-After``) and a daemon that is down, then claims again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import anyio
import httpx
import msgspec

__all__ = ["LeaseLost", "Leases", "WorkerClient", "WorkerError", "WorkerLease"]


class WorkerError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.retry_after = retry_after  # 429 / 503: the server's Retry-After
        self.message = message


class LeaseLost(WorkerError):
    """The lease is no longer this worker's (stale token, HTTP 409): stop working on it."""


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        message = str(msgspec.json.decode(resp.content)["error"]["message"])
    except Exception:  # not our error shape (a proxy's page): the raw text
        message = resp.text[:500]
    if resp.status_code == 409:
        raise LeaseLost(409, message)
    retry = resp.headers.get("retry-after", "")
    after = float(retry) if retry.replace(".", "", 1).isdigit() else None
    raise WorkerError(resp.status_code, message, after)


class WorkerLease:
    """One claimed run: its ``payload`` and the calls that report on it."""

    def __init__(self, client: WorkerClient, data: dict[str, Any]) -> None:
        self._client = client
        self.run_id: int = data["run_id"]
        self.dispatch_id: int = data["dispatch_id"]
        self.job: str = data["job"]
        self.payload: Any = data["payload"]
        self.attempt: int = data["attempt"]
        self.token: str = data["token"]
        self.deadline: float = data["deadline"]
        self.idle_timeout: float = data["idle_timeout"]
        self.done = False
        self.lost: LeaseLost | None = None
        self._scope: anyio.CancelScope | None = None
        self._beating = False

    async def _post(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/workers/leases/{self.run_id}/{what}"
        resp = await self._client.http.post(path, json={"token": self.token, **body})
        _raise_for(resp)
        out: dict[str, Any] = resp.json()
        if out.get("deadline"):
            self.deadline = out["deadline"]
        return out

    async def heartbeat(self) -> None:
        await self._post("heartbeat", {})

    async def progress(self, progress: int | None = None, message: str | None = None) -> None:
        body: dict[str, Any] = {}
        if progress is not None:
            body["progress"] = progress
        if message is not None:
            body["message"] = message
        await self._post("progress", body)

    async def complete(self, result: Any = None) -> None:
        await self._post("complete", {"result": result})
        self._finished()

    async def fail(self, error: str, *, retryable: bool = True) -> None:
        await self._post("fail", {"error": error, "retryable": retryable})
        self._finished()

    def _finished(self) -> None:
        self.done = True
        if self._scope is not None:
            self._scope.cancel()

    async def _beat(self) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            every = max(0.05, self.idle_timeout / 3)
            while not self.done:
                await anyio.sleep(every)
                try:
                    await self.heartbeat()
                except LeaseLost as exc:
                    self.lost = exc
                    return
                except (WorkerError, httpx.HTTPError):
                    continue  # the next beat may get through before the deadline

    def start_heartbeats(self) -> None:
        """Renew the lease every ``idle_timeout / 3`` s (in the client's task group)
        until it is reported on or ``stop_heartbeats`` is called."""
        if not self._beating and not self.done:
            self._beating = True
            self._client.task_group().start_soon(self._beat)

    def stop_heartbeats(self) -> None:
        self.done = True
        if self._scope is not None:
            self._scope.cancel()

    async def __aenter__(self) -> WorkerLease:
        self.start_heartbeats()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            failed = isinstance(exc, Exception) and not isinstance(exc, LeaseLost)
            if not self.done and failed:
                with anyio.CancelScope(shield=True):
                    try:
                        await self.fail(f"{type(exc).__name__}: {exc}", retryable=True)
                    except WorkerError:
                        pass
        finally:
            self.stop_heartbeats()

    def __repr__(self) -> str:
        return f"<WorkerLease run={self.run_id} job={self.job!r} attempt={self.attempt}>"


class WorkerClient:
    """``http``: an ``httpx.AsyncClient`` to share (its base URL, token and agent
    headers are used as they are, and it is not closed here); else one is made."""

    def __init__(
        self,
        url: str = "",
        *,
        token: str | None = None,
        agent: str | None = None,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if agent:
            headers["X-Agent-ID"] = agent
        self.url = url or (str(http.base_url) if http is not None else "")
        self.agent = agent
        self._timeout = timeout
        self._owned = http is None
        self.http = http or httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)
        self._tg: Any = None

    async def claim(
        self, capabilities: list[str] | None = None, *, wait: float = 0.0
    ) -> WorkerLease | None:
        """One lease, waiting up to ``wait`` s (the server caps it); None: nothing came."""
        body: dict[str, Any] = {"wait": wait, "max": 1}
        if capabilities is not None:
            body["capabilities"] = capabilities
        resp = await self.http.post(
            "/api/v1/workers/claim", json=body, timeout=max(self._timeout, wait + 10.0)
        )
        if resp.status_code == 204:
            return None
        _raise_for(resp)
        return WorkerLease(self, resp.json()["lease"])

    async def leases(
        self, capabilities: list[str] | None = None, *, wait: float = 30.0
    ) -> AsyncIterator[WorkerLease]:
        """Leases as they come, one at a time, until the caller stops iterating. Each is
        heartbeaten while the loop body runs; a body that ends without a report fails
        the run (retryable)."""
        while True:
            try:
                lease = await self.claim(capabilities, wait=wait)
            except WorkerError as exc:  # rate limited or busy: wait as told, claim again
                if exc.status not in (429, 503):
                    raise
                await anyio.sleep(exc.retry_after or 1.0)
                continue
            except httpx.TransportError:  # the daemon restarts: claim again shortly
                await anyio.sleep(1.0)
                continue
            if lease is None:
                continue
            lease.start_heartbeats()
            try:
                yield lease
            except GeneratorExit:  # the caller stopped iterating: no more heartbeats
                lease.stop_heartbeats()
                raise
            if not lease.done and lease.lost is None:
                await lease.fail("the worker ended without a report", retryable=True)
            lease.stop_heartbeats()

    def task_group(self) -> Any:
        if self._tg is None:
            raise RuntimeError("heartbeats need the client entered: async with WorkerClient(...)")
        return self._tg

    async def aclose(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def __aenter__(self) -> WorkerClient:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        try:
            if tg is not None:
                tg.cancel_scope.cancel()  # the heartbeats of leases left unreported
                await tg.__aexit__(kind, exc, tb)
        finally:
            await self.aclose()

    def __repr__(self) -> str:
        return f"<WorkerClient {self.url} agent={self.agent!r}>"


class Leases:
    """``async with Leases(client, ["gpu"]) as leases: async for lease in leases: ...``:
    the heartbeats' task group lives in the ``async with`` (``Client.leases``)."""

    def __init__(
        self, client: WorkerClient, capabilities: list[str] | None = None, *, wait: float = 30.0
    ) -> None:
        self._client = client
        self._capabilities = capabilities
        self._wait = wait

    async def __aenter__(self) -> AsyncIterator[WorkerLease]:
        await self._client.__aenter__()
        return self._client.leases(self._capabilities, wait=self._wait)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(kind, exc, tb)
