"""PostgreSQL SQL of queries (mirrors ``store.sqlite.queries``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = [
    "cancel_requests",
    "dispatch_by_key",
    "get_dispatch",
    "get_job",
    "get_run",
    "jobs_by_id",
    "latest_instance",
    "list_dispatches",
    "list_jobs",
    "list_runs",
    "queued_since",
    "schedule_states",
    "stats",
]


async def cancel_requests(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.cancel_requests: not ported yet")


async def dispatch_by_key(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.dispatch_by_key: not ported yet")


async def get_dispatch(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.get_dispatch: not ported yet")


async def get_job(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.get_job: not ported yet")


async def get_run(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.get_run: not ported yet")


async def jobs_by_id(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.jobs_by_id: not ported yet")


async def latest_instance(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.latest_instance: not ported yet")


async def list_dispatches(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.list_dispatches: not ported yet")


async def list_jobs(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.list_jobs: not ported yet")


async def list_runs(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.list_runs: not ported yet")


async def queued_since(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.queued_since: not ported yet")


async def schedule_states(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.schedule_states: not ported yet")


async def stats(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.queries.stats: not ported yet")
