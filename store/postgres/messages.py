"""PostgreSQL SQL of messages (mirrors ``store.sqlite.messages``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = [
    "expire_messages",
    "get_message",
    "inbox",
    "insert_messages",
    "list_messages",
    "mark_messages",
    "thread",
]


async def expire_messages(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.messages.expire_messages: not ported yet")


async def get_message(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.messages.get_message: not ported yet")


async def inbox(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.messages.inbox: not ported yet")


async def insert_messages(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.messages.insert_messages: not ported yet")


async def list_messages(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.messages.list_messages: not ported yet")


async def mark_messages(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.messages.mark_messages: not ported yet")


async def thread(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.messages.thread: not ported yet")
