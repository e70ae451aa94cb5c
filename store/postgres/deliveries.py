"""PostgreSQL SQL of deliveries (mirrors ``store.sqlite.deliveries``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = [
    "get_delivery",
    "insert_deliveries",
    "list_deliveries",
    "pending_deliveries",
    "record_attempts",
    "requeue_deliveries",
]


async def get_delivery(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.deliveries.get_delivery: not ported yet")


async def insert_deliveries(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.deliveries.insert_deliveries: not ported yet")


async def list_deliveries(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.deliveries.list_deliveries: not ported yet")


async def pending_deliveries(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.deliveries.pending_deliveries: not ported yet")


async def record_attempts(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.deliveries.record_attempts: not ported yet")


async def requeue_deliveries(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.deliveries.requeue_deliveries: not ported yet")
