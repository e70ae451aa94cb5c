"""PostgreSQL SQL of approvals (mirrors ``store.sqlite.approvals``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["apply_approval_op", "get_approval", "list_approvals", "next_deadline"]


async def apply_approval_op(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.approvals.apply_approval_op: not ported yet")


async def get_approval(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.approvals.get_approval: not ported yet")


async def list_approvals(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.approvals.list_approvals: not ported yet")


async def next_deadline(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.approvals.next_deadline: not ported yet")
