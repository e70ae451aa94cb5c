"""Fixtures for executor tests (the gateway stand-in fixtures are in tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import pytest

from shepherd.actors.executors import forker
from shepherd.actors.executors.base import RunContext
from shepherd.actors.executors.host import Host
from shepherd.actors.executors.procs import ProcessId
from shepherd.store.errors import NotFound
from shepherd.store.models import JobRow, JobSpec, Message, Run


class Beats:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _note: str | None) -> None:
        self.count += 1


class FakeHost:
    """A ``Host`` over plain lists: what the executor asked is recorded on it."""

    def __init__(
        self,
        inbox: Sequence[Message] = (),
        runs: Sequence[Run] = (),
        jobs: Sequence[JobRow] = (),
    ) -> None:
        self._inbox = list(inbox)
        self._runs = {r.id: r for r in runs}
        self._jobs = {j.name: j for j in jobs}
        self.delivered: list[int] = []
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.retired: list[str] = []
        self.processes: list[tuple[int, ProcessId]] = []

    async def inbox(self, agent: str, *, limit: int) -> list[Message]:
        return [m for m in self._inbox if m.to_agent in (agent, "broadcast")][:limit]

    async def mark_delivered(self, ids: Sequence[int]) -> int:
        self.delivered += ids
        return len(ids)

    async def run(self, run_id: int) -> Run:
        if run_id not in self._runs:
            raise NotFound(f"no run {run_id}")
        return self._runs[run_id]

    async def job(self, name: str) -> JobRow:
        if name not in self._jobs:
            raise NotFound(f"no job named {name!r}")
        return self._jobs[name]

    async def retire_job(self, name: str) -> None:
        self.retired.append(name)
        self._jobs.pop(name, None)

    async def deliver(
        self,
        body: str,
        *,
        to: str | None,
        channel: str | None,
        kind: str,
        job: str | None,
        run_id: int | None,
        dispatch_id: int | None,
        outcome: str | None,
    ) -> int:
        self.alerts.append(
            (
                body,
                dict(to=to, channel=channel, kind=kind, job=job, run_id=run_id,
                     dispatch_id=dispatch_id, outcome=outcome),
            )
        )  # fmt: skip
        return len(self.alerts)

    async def record_process(self, run_id: int, proc: ProcessId) -> None:
        self.processes.append((run_id, proc))


def make_ctx(
    job: JobSpec,
    *,
    job_id: int = 7,
    run_id: int = 1,
    payload: dict[str, Any] | None = None,
    host: Host | None = None,
    idempotency_key: str | None = "key-1",
    parent_run_id: int | None = None,
    beats: Beats | None = None,
    data_dir: str = ".",
) -> RunContext:
    return RunContext(
        run_id=run_id,
        dispatch_id=run_id,
        job_id=job_id,
        job=job,
        attempt=1,
        max_attempts=3,
        payload=dict(job.payload) if payload is None else payload,
        idempotency_key=idempotency_key,
        parent_run_id=parent_run_id,
        data_dir=data_dir,
        wall=time.time,
        on_heartbeat=beats,
        host=host,
    )


@pytest.fixture(params=["fork server", "in the runtime"])
def spawning(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Commands started through a fork server (as in a runtime on Linux) or by the
    runtime itself (``child.start``: elsewhere, or an executor used on its own)."""
    if request.param == "in the runtime" or not forker.available():
        yield request.param
        return
    server = forker.ForkServer()
    monkeypatch.setattr(forker, "CURRENT", ContextVar("fork_server", default=server))
    try:
        yield request.param
    finally:
        server.close()
