"""The task-group actor: the timers of OCS's task tracker (a dead-man switch).

Role: keeps every open task group's member deadlines (``store.ops.groups.
member_deadline``: past the group's timeout with no heartbeat in its window) in a heap
and sleeps until the earliest; when it passes, it commits ``MarkDead`` for that group
(the store re-checks the deadline on the stored rows, so a heartbeat committed meanwhile
by any process wins). The op that makes the last member final also ends the group and
queues its summary delivery, once; the actor then tells the router to load it.
Reports and heartbeats are written by the runtime (``runtime/_groups_api.py``) or the
CLI; they tell this actor which group changed (``GroupsChanged``, or ingest's
``Poke(groups=True)`` from another process) and it re-reads it. No fixed tick.

Inbox: ``GroupsMsg`` = ``GroupsChanged`` (re-read these groups; None = all open) |
``Poke`` (``groups``: another process changed groups; re-read all, and the router
loads any summary that process queued) | ``StopGroups``. Sends: ``MarkDead`` ops to
the store writer, ``Reload`` to the router. Restart type: permanent; on (re)start it
loads every open group from the store, so members that went silent while the process
was down die at once, and a summary is never queued twice (the store guards it).
Timers: one, the earliest member deadline (``receive_by``); after a failed commit,
that group again ``retry_delay`` later.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from typing import Any, assert_never

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors.messages import Poke
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Mailbox, receive_by
from shepherd.actors.router import Reload, RouterMsg
from shepherd.actors.writer import StoreMsg, write_each
from shepherd.store.errors import MailboxClosed, MailboxFull, StoreError
from shepherd.store.ops import MarkDead, Reported
from shepherd.store.protocol import Store

__all__ = ["GroupTimers", "GroupsChanged", "GroupsMsg", "StopGroups"]

log = logging.getLogger("shepherd.groups")


class GroupsChanged(msgspec.Struct, frozen=True, tag=True):
    """These groups changed in the store (None: any); ``delivery``: one of the writes
    queued a summary delivery, so the router should load it."""

    group_ids: list[int] | None
    delivery: bool = False


class StopGroups(msgspec.Struct, frozen=True, tag=True):
    """Exit after the current pass (deadlines are the store's: nothing is lost)."""


GroupsMsg = GroupsChanged | Poke | StopGroups


class GroupTimers:
    def __init__(
        self,
        *,
        store: Store,
        writer: Address[StoreMsg],
        mailbox: Mailbox[GroupsMsg],
        router: Address[RouterMsg],
        clock: Clock,
        max_attempts: int = 8,
        retry_delay: float = 1.0,
    ) -> None:
        self._store = store
        self._writer = writer
        self._mailbox = mailbox
        self._router = router
        self._clock = clock
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self.counters = dict.fromkeys(("dead", "ended", "store_errors", "reloads"), 0)
        self.last_error: str | None = None
        self._reset()

    def _reset(self) -> None:
        # open group id -> its earliest member deadline (the heap entry that counts)
        self._due: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._reset()
        await self._reload(None)
        task_status.started()
        while True:
            await self._expire(self._clock.wall())
            try:
                first = await receive_by(self._mailbox, self._clock, self._next_due())
            except anyio.EndOfStream:
                return
            if first is None:
                continue
            ids: set[int] | None = set()
            router = stop = False
            for msg in self._mailbox.drain(first, 1000):
                match msg:
                    case GroupsChanged(group_ids, delivery):
                        ids = None if group_ids is None or ids is None else ids | set(group_ids)
                        router = router or delivery
                    case Poke(groups=groups):
                        if groups:
                            ids, router = None, True
                    case StopGroups():
                        stop = True
                    case _:
                        assert_never(msg)
            if ids is None or ids:
                await self._reload(ids)
            if router:
                self._reload_router()
            if stop:
                return

    # -- deadlines -------------------------------------------------------------------

    def _next_due(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded by a later push
        return self._heap[0][0] if self._heap else None

    def _arm(self, group_id: int, at: float | None) -> None:
        if at is None:
            self._due.pop(group_id, None)
            return
        self._due[group_id] = at
        heapq.heappush(self._heap, (at, group_id))

    async def _expire(self, now: float) -> None:
        due: list[int] = []
        while (at := self._next_due()) is not None and at <= now:
            _, group_id = heapq.heappop(self._heap)
            self._due.pop(group_id, None)
            due.append(group_id)
        if not due:
            return
        ops = [MarkDead(group_id=g, now=now, max_attempts=self._max_attempts) for g in due]
        results = await write_each(self._writer, ops)
        delivered = False
        for group_id, result in zip(due, results, strict=True):
            if isinstance(result, StoreError):
                self.counters["store_errors"] += 1
                self.last_error = str(result)
                log.error("could not time out members of task group %s: %s", group_id, result)
                self._arm(group_id, now + self._retry_delay)
                continue
            assert isinstance(result, Reported)
            self.counters["dead"] += len(result.dead)
            if result.group_status in ("completed", "failed"):
                self.counters["ended"] += 1
                delivered = delivered or result.delivery_id is not None
        await self._reload([g for g in due if g not in self._due], now=now)
        if delivered:
            self._reload_router()

    async def _reload(self, ids: Iterable[int] | None, *, now: float | None = None) -> None:
        """Re-read the earliest deadline of these open groups (None: all of them); a
        group that is not open any more is dropped."""
        self.counters["reloads"] += 1
        wanted = None if ids is None else sorted(set(ids))
        if wanted == []:
            return
        try:
            deadlines = await self._store.group_deadlines(wanted)
        except StoreError as exc:  # the next change, poke or restart reads again
            self.counters["store_errors"] += 1
            self.last_error = str(exc)
            log.error("could not read task groups: %s", exc)
            return
        gone = (set(self._due) if wanted is None else set(wanted)) - set(deadlines)
        for group_id in gone:
            if group_id in self._due:
                self.counters["ended"] += 1
            self._arm(group_id, None)
        for group_id, at in deadlines.items():
            if now is not None and at <= now:
                at = now + self._retry_delay  # the store found none due yet: look again
            self._arm(group_id, at)

    def _reload_router(self) -> None:
        try:
            self._router.tell(Reload())
        except (MailboxFull, MailboxClosed):  # its next sweep loads pending deliveries
            pass

    # -- introspection -------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            "open": len(self._due),
            "next_due": self._next_due(),
            "last_error": self.last_error,
            **self.counters,
        }

    def __repr__(self) -> str:
        return f"<GroupTimers open={len(self._due)} dead={self.counters['dead']}>"
