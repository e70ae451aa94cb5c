"""Fixtures for executor tests (the gateway stand-in fixtures are in tests/conftest.py)."""

from __future__ import annotations

import time
from typing import Any

from shepherd.actors.executors.base import RunContext
from shepherd.store.models import JobSpec


class Beats:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _note: str | None) -> None:
        self.count += 1


def make_ctx(
    job: JobSpec,
    *,
    job_id: int = 7,
    run_id: int = 1,
    payload: dict[str, Any] | None = None,
    services: dict[str, Any] | None = None,
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
        services=services,
    )
