"""PostgreSQL SQL of chains (mirrors ``store.sqlite.chains``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["cancel_chain"]


async def cancel_chain(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.chains.cancel_chain: not ported yet")
