"""PostgreSQL SQL of agents (mirrors ``store.sqlite.agents``). PORTING: each function below is a
placeholder until its port lands; none may remain when the work is done."""

from __future__ import annotations

from typing import Any

__all__ = ["agents_since", "apply_agent_op", "get_agent", "list_agents"]


async def agents_since(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.agents.agents_since: not ported yet")


async def apply_agent_op(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.agents.apply_agent_op: not ported yet")


async def get_agent(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.agents.get_agent: not ported yet")


async def list_agents(conn: Any, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("store.postgres.agents.list_agents: not ported yet")
