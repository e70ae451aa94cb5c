"""PostgreSQL SQL of imports (mirrors ``store.sqlite.imports``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["import_batch"]


async def import_batch(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.imports.import_batch: not ported yet")
