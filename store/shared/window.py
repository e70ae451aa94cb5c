"""The dispatcher's window reads, engine-neutral half: the keyset cursors and the
statements both engines run over the partial index ``dispatches_ready``
(``(priority, not_before, seq) WHERE status = 'queued'``).

The dispatcher holds a bounded window of the queue's head instead of every queued row
(``actors.dispatcher.ready``); the database is the queue. Two reads refill it, each a
few range scans of that index, one per priority rank, so their cost follows the page
asked for, never the backlog:

- ``queued_ready(after, now, limit)``: the next due dispatches (``not_before <= now``)
  past the cursor ``after`` = ``(rank, not_before, seq)``, in the order the ready heap
  pops them (rank, then not-before, then seq). Rank by rank: a rank's due rows are a
  prefix of its index range, so the future rows of a rank are never scanned.
- ``queued_later(after, limit)``: the next dispatches by ``(not_before, seq)`` past
  ``after`` = ``(not_before, seq)``, whatever their rank (the delayed heap's order):
  one page per rank, merged. ``(now, LAST_SEQ)`` asks for every row not yet due.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from shepherd.store.models import PRIORITIES
from shepherd.store.shared.queries import Mark

__all__ = [
    "LAST_SEQ",
    "RANKS",
    "LaterKey",
    "ReadyKey",
    "later_sql",
    "merge_later",
    "ready_pages",
    "ready_sql",
]

T = TypeVar("T")
ReadyKey = tuple[int, float, int]  # (priority rank, not_before, seq)
LaterKey = tuple[float, int]  # (not_before, seq)
RANKS = range(len(PRIORITIES))
LAST_SEQ = 2**63 - 1  # above every seq: ``(t, LAST_SEQ)`` is "past every row at t"


def ready_pages(after: ReadyKey | None) -> Iterator[tuple[int, bool]]:
    """The ranks a ready read visits from ``after``, in order, each with whether the
    cursor bounds it (its own rank: past ``(not_before, seq)``)."""
    first = 0 if after is None else after[0]
    for rank in RANKS:
        if rank >= first:
            yield rank, after is not None and rank == after[0]


def ready_sql(columns: str, mark: Mark, bounded: bool, source: str = "dispatches") -> str:
    """One rank's page of due rows: ``rank, now[, nb, seq], limit`` are bound in order
    (``source``: the table, with SQLite's ``INDEXED BY`` where it pins the plan)."""
    n = iter(range(1, 6))
    sql = (
        f"SELECT {columns} FROM {source} WHERE status = 'queued'"
        f" AND priority = {mark(next(n))} AND not_before <= {mark(next(n))}"
    )
    if bounded:
        sql += f" AND (not_before, seq) > ({mark(next(n))}, {mark(next(n))})"
    return sql + f" ORDER BY not_before, seq LIMIT {mark(next(n))}"


def later_sql(columns: str, mark: Mark, source: str = "dispatches") -> str:
    """One rank's page by ``(not_before, seq)``: ``rank, nb, seq, limit`` bound in order."""
    return (
        f"SELECT {columns} FROM {source} WHERE status = 'queued'"
        f" AND priority = {mark(1)} AND (not_before, seq) > ({mark(2)}, {mark(3)})"
        f" ORDER BY not_before, seq LIMIT {mark(4)}"
    )


def merge_later(pages: Iterable[list[T]], key: Callable[[T], LaterKey], limit: int) -> list[T]:
    """The first ``limit`` rows of per-rank pages (each already in ``key`` order)."""
    return list(heapq.merge(*pages, key=key))[:limit]
