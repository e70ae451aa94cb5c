"""The dispatcher's window reads on PostgreSQL, with the semantics of
``store.sqlite.window`` (``store.shared.window`` has the cursors and statements): each
rank's page is a range of the partial index ``dispatches_ready``. They run on a pooled
connection (``PgStore.read``)."""

from __future__ import annotations

import asyncpg

from shepherd.store.models import Dispatch
from shepherd.store.shared.queries import DISPATCH_COLUMNS, dispatch_from_row, numbered
from shepherd.store.shared.window import (
    RANKS,
    Lane,
    LaterKey,
    ReadyKey,
    later_sql,
    merge_later,
    ready_args,
    ready_pages,
    ready_sql,
)

__all__ = ["newest_seq", "queued_later", "queued_ready"]

_READY = {
    (b, laned): ready_sql(DISPATCH_COLUMNS, numbered, b, laned=laned)
    for b in (False, True)
    for laned in (False, True)
}
_LATER = later_sql(DISPATCH_COLUMNS, numbered)


async def queued_ready(
    conn: asyncpg.Connection,
    after: ReadyKey | None,
    *,
    now: float,
    limit: int,
    lane: Lane | None = None,
) -> list[Dispatch]:
    """Up to ``limit`` due queued dispatches past ``after`` (None: from the head), by
    (priority rank, not_before, seq); with ``lane``, that lane's only."""
    out: list[Dispatch] = []
    for rank, bounded, laned in ready_pages(after, lane):
        if len(out) >= limit:
            break
        cursor = (float(after[1]), int(after[2])) if after is not None and bounded else ()
        args = ready_args(rank, float(now), cursor, lane if laned else None, limit - len(out))
        out += map(dispatch_from_row, await conn.fetch(_READY[bounded, laned], *args))
    return out


async def queued_later(conn: asyncpg.Connection, after: LaterKey, *, limit: int) -> list[Dispatch]:
    """Up to ``limit`` queued dispatches past ``after`` by (not_before, seq)."""
    nb, seq = float(after[0]), int(after[1])
    pages = [
        [dispatch_from_row(r) for r in await conn.fetch(_LATER, rank, nb, seq, limit)]
        for rank in RANKS
    ]
    return merge_later(pages, lambda d: (d.not_before, d.seq), limit)


async def newest_seq(conn: asyncpg.Connection) -> int:
    """The highest seq any dispatch took (0: none): the unique index's last entry."""
    return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM dispatches") or 0)
