"""PostgreSQL SQL of dispatches (mirrors ``store.sqlite.dispatches``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["insert_dispatches"]


async def insert_dispatches(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.dispatches.insert_dispatches: not ported yet")
