"""Small builders for the contract suite: jobs, dispatches, claims and outcomes."""

from __future__ import annotations

from typing import Any

from shepherd.store.models import JobSpec, encode_json
from shepherd.store.ops import (
    ClaimRun,
    ClaimRuns,
    FinishRun,
    FinishRuns,
    InsertDispatches,
    NewDispatch,
    SaveJob,
)
from shepherd.store.protocol import Store

ORIGIN = "contract"


async def add_job(
    store: Store, name: str, *, now: float = 1.0, next_run_at: float | None = None, **spec: Any
) -> int:
    body = JobSpec(name=name, target="ok", **spec)
    op = SaveJob(name, body.executor, body.enabled, encode_json(body), next_run_at, now)
    job_id: int = await store.apply_one(op)
    return job_id


def new(job_id: int, name: str = "a", **fields: Any) -> NewDispatch:
    values: dict[str, Any] = {
        "kind": "enqueue",
        "priority": 2,
        "not_before": 0.0,
        "max_attempts": 3,
    }
    values.update(fields)
    return NewDispatch(job_id=job_id, job_name=name, **values)


async def enqueue(store: Store, *rows: NewDispatch, now: float = 2.0) -> list[Any]:
    got: list[Any] = await store.apply_one(InsertDispatches(list(rows), ORIGIN, now))
    return got


async def claim(
    store: Store,
    dispatch_id: int,
    *,
    attempt: int = 1,
    key: str | None = None,
    job_id: int = 0,
    now: float = 3.0,
    ttl: float | None = None,
) -> int | None:
    extra = {} if ttl is None else {"key_ttl": ttl}
    c = ClaimRun(
        dispatch_id=dispatch_id, attempt=attempt, idempotency_key=key, job_id=job_id, **extra
    )
    [run_id] = await store.apply_one(ClaimRuns([c], ORIGIN, now))
    return run_id  # type: ignore[no-any-return]


async def finish(
    store: Store,
    run_id: int,
    dispatch_id: int,
    *,
    outcome: str = "ok",
    next: str = "done",
    now: float = 4.0,
    **fields: Any,
) -> int | None:
    f = FinishRun(run_id=run_id, dispatch_id=dispatch_id, outcome=outcome, next=next, **fields)
    [got] = await store.apply_one(FinishRuns([f], now, ORIGIN))
    return got  # type: ignore[no-any-return]
