"""PostgreSQL SQL of runs (mirrors ``store.sqlite.runs``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = [
    "cancel_dispatch",
    "heartbeats",
    "orphaned_processes",
    "purge_dead",
    "record_process",
    "recover_orphans",
    "retry_dead",
    "save_status",
    "settle_queued",
]


async def cancel_dispatch(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.cancel_dispatch: not ported yet")


async def heartbeats(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.heartbeats: not ported yet")


async def orphaned_processes(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.orphaned_processes: not ported yet")


async def purge_dead(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.purge_dead: not ported yet")


async def record_process(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.record_process: not ported yet")


async def recover_orphans(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.recover_orphans: not ported yet")


async def retry_dead(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.retry_dead: not ported yet")


async def save_status(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.save_status: not ported yet")


async def settle_queued(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.runs.settle_queued: not ported yet")
