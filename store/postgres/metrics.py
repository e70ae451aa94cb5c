"""PostgreSQL SQL of metrics (mirrors ``store.sqlite.metrics``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["queue_depth"]


async def queue_depth(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.metrics.queue_depth: not ported yet")
