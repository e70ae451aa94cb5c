"""PostgreSQL SQL of spawn (mirrors ``store.sqlite.spawn``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["failed_spawns", "pending_spawns", "spawn_message"]


async def failed_spawns(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.spawn.failed_spawns: not ported yet")


async def pending_spawns(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.spawn.pending_spawns: not ported yet")


async def spawn_message(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.spawn.spawn_message: not ported yet")
