"""PostgreSQL SQL of controls (mirrors ``store.sqlite.controls``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["clear_pauses", "pauses", "set_pause"]


async def clear_pauses(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.controls.clear_pauses: not ported yet")


async def pauses(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.controls.pauses: not ported yet")


async def set_pause(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.controls.set_pause: not ported yet")
