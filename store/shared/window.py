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

**Lanes.** Nodes of a cluster that each read the same head of one backlog ask for the
same dispatches, and one claim in two is lost. A ``lane`` ``(index, count)`` narrows a
ready read to this node's share of the split ranks (``SPLIT_FROM`` on: normal, low,
background): the rows with ``seq % count = index``. Critical and high rows are read by
every node whatever its lane. The dispatcher decides when to keep to a lane and when to
take from the others' (``actors.dispatcher.loader``).
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
    "SPLIT_FROM",
    "Lane",
    "LaterKey",
    "ReadyKey",
    "in_lane",
    "later_sql",
    "merge_later",
    "ready_args",
    "ready_pages",
    "ready_sql",
]

T = TypeVar("T")
ReadyKey = tuple[int, float, int]  # (priority rank, not_before, seq)
LaterKey = tuple[float, int]  # (not_before, seq)
RANKS = range(len(PRIORITIES))
LAST_SEQ = 2**63 - 1  # above every seq: ``(t, LAST_SEQ)`` is "past every row at t"
Lane = tuple[int, int]  # (index, count): the rows with seq % count = index
SPLIT_FROM = PRIORITIES.index("normal")  # ranks from this one on are split into lanes


def in_lane(rank: int, seq: int, lane: Lane | None) -> bool:
    """Whether a row of ``rank`` and ``seq`` is read in ``lane`` (None: every row)."""
    return lane is None or rank < SPLIT_FROM or seq % lane[1] == lane[0]


def ready_pages(
    after: ReadyKey | None, lane: Lane | None = None
) -> Iterator[tuple[int, bool, bool]]:
    """The ranks a ready read visits from ``after``, in order, each with whether the
    cursor bounds it (its own rank: past ``(not_before, seq)``) and whether ``lane``
    narrows it."""
    first = 0 if after is None else after[0]
    for rank in RANKS:
        if rank >= first:
            yield (
                rank,
                after is not None and rank == after[0],
                lane is not None and rank >= SPLIT_FROM,
            )


def ready_sql(
    columns: str, mark: Mark, bounded: bool, source: str = "dispatches", laned: bool = False
) -> str:
    """One rank's page of due rows: ``rank, now[, nb, seq][, count, index], limit`` are
    bound in order (``source``: the table, with SQLite's ``INDEXED BY`` where it pins
    the plan; ``laned``: only the rows of one lane)."""
    n = iter(range(1, 8))
    sql = (
        f"SELECT {columns} FROM {source} WHERE status = 'queued'"
        f" AND priority = {mark(next(n))} AND not_before <= {mark(next(n))}"
    )
    if bounded:
        sql += f" AND (not_before, seq) > ({mark(next(n))}, {mark(next(n))})"
    if laned:
        sql += f" AND seq % {mark(next(n))} = {mark(next(n))}"
    return sql + f" ORDER BY not_before, seq LIMIT {mark(next(n))}"


def ready_args(
    rank: int, now: float, cursor: tuple[float, int] | tuple[()], lane: Lane | None, limit: int
) -> tuple[object, ...]:
    """The parameters of ``ready_sql`` for one rank's page, in its order (``lane``: the
    lane that narrows this page, None where ``ready_pages`` says it does not)."""
    narrow = (lane[1], lane[0]) if lane is not None else ()
    return (rank, now, *cursor, *narrow, limit)


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
