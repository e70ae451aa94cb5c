"""Backups of a PostgreSQL schema. PORTING: placeholder until its port lands."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["dump_to"]


async def dump_to(
    dsn: str, schema: str, target: str, *, progress: Callable[[int, int], None] | None = None
) -> int:
    raise NotImplementedError("store.postgres.backup.dump_to: not ported yet")
