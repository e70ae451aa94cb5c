"""PostgreSQL SQL of prune (mirrors ``store.sqlite.prune``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["apply_prune_op"]


async def apply_prune_op(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.prune.apply_prune_op: not ported yet")
