"""PostgreSQL SQL of jobs (mirrors ``store.sqlite.jobs``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["delete_job", "record_slots", "save_job", "set_job_state"]


async def delete_job(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.jobs.delete_job: not ported yet")


async def record_slots(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.jobs.record_slots: not ported yet")


async def save_job(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.jobs.save_job: not ported yet")


async def set_job_state(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.jobs.set_job_state: not ported yet")
