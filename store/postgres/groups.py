"""PostgreSQL SQL of groups (mirrors ``store.sqlite.groups``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = [
    "create_group",
    "get_group",
    "group_deadlines",
    "groups_by_id",
    "list_groups",
    "mark_dead",
    "open_groups",
    "report_member",
]


async def create_group(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.create_group: not ported yet")


async def get_group(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.get_group: not ported yet")


async def group_deadlines(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.group_deadlines: not ported yet")


async def groups_by_id(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.groups_by_id: not ported yet")


async def list_groups(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.list_groups: not ported yet")


async def mark_dead(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.mark_dead: not ported yet")


async def open_groups(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.open_groups: not ported yet")


async def report_member(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.groups.report_member: not ported yet")
