"""PostgreSQL SQL of claims (mirrors ``store.sqlite.claims``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["claim_runs", "finish_runs"]


async def claim_runs(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.claims.claim_runs: not ported yet")


async def finish_runs(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.claims.finish_runs: not ported yet")
