"""The approvals actor: the timeouts of pending approvals (README "Approvals", D13).

Role: sleep until the earliest deadline of a pending approval, then apply each due
approval's ``on_timeout`` in one op (``ExpireApprovals``: approve → its dispatch queued,
reject → ``timed_out`` and its dispatch cancelled) and tell the dispatcher about the
dispatches that op queued. The store's partial index ``approvals_deadline`` is the
heap: the actor keeps only the earliest deadline (``next_approval_deadline``, one index
probe), so its memory does not grow with the pending approvals, and 10,000 of them cost
nothing until one is due.
Inbox: ``ApprovalsMsg`` = ``Poke`` (``approvals``: approvals were committed, by this
runtime's inserts or another process's, through ingest; read the earliest deadline
again and tell the router to load their request deliveries).
Sends: write ops to the store writer (ask), ``Enqueued`` to the dispatcher, ``Reload``
to the router, and for each dispatch a timeout cancelled the final ``OutcomeEvent``
(``cancelled_event``: waiters hear it, and the scheduler ends a fired one-shot job whose
dispatch it was, as after a run).
Restart type: permanent; on (re)start it repairs what a foreign writer may have left
(D8, ``RepairApprovals``: a dispatch still waiting for an approval already approved,
rejected or timed out) and reads the earliest deadline. Timers: one, that deadline,
folded into the receive (``receive_by``); no periodic re-read: every inserter tells
(chain children committed by the dispatcher's finalize arrive as the ``ApprovalsHeld``
event, routed here as a ``Poke``); ``retry_delay`` later after a failed commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, assert_never

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors.messages import (
    DispatcherMsg,
    Enqueued,
    Event,
    OutcomeEvent,
    Poke,
    entry_from_dispatch,
)
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Mailbox, receive_by
from shepherd.actors.router import Reload, RouterMsg
from shepherd.actors.writer import StoreMsg, write
from shepherd.store.errors import MailboxClosed, MailboxFull, StoreError
from shepherd.store.models import Approval, Dispatch
from shepherd.store.ops import ExpireApprovals, RepairApprovals, Resolved
from shepherd.store.protocol import Store

__all__ = ["ApprovalTimer", "ApprovalsConfig", "ApprovalsMsg", "cancelled_event"]

log = logging.getLogger("shepherd.approvals")

ApprovalsMsg = Poke


class ApprovalsConfig(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    batch: int = 1000  # approvals resolved per op when many are due at once
    retry_delay: float = 1.0  # after a failed commit


def cancelled_event(approval: Approval, at: float) -> OutcomeEvent:
    """The final outcome of a dispatch its rejected or timed-out approval cancelled
    (it never ran): what ``wait`` callers and the scheduler hear, as for any other end."""
    why = "approval timed out" if approval.status == "timed_out" else "rejected"
    if approval.status == "rejected" and approval.resolved_by:
        why = f"rejected by {approval.resolved_by}"
    return OutcomeEvent(
        dispatch_id=approval.dispatch_id,
        job=approval.job_name,
        run_id=None,
        attempt=0,
        outcome="cancelled",
        status="cancelled",
        final=True,
        at=at,
        job_id=approval.job_id,
        kind=approval.kind or "enqueue",
        error=f"{why}: {approval.reason}" if approval.reason else why,
    )


class ApprovalTimer:
    def __init__(
        self,
        cfg: ApprovalsConfig,
        *,
        store: Store,
        writer: Address[StoreMsg],
        mailbox: Mailbox[ApprovalsMsg],
        dispatcher: Address[DispatcherMsg],
        router: Address[RouterMsg],
        clock: Clock,
        emit: Callable[[Event], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._writer = writer
        self._mailbox = mailbox
        self._dispatcher = dispatcher
        self._router = router
        self._clock = clock
        self._emit = emit
        self.next_deadline: float | None = None
        self.last_error: str | None = None
        self.counters = dict.fromkeys(("approved", "timed_out", "repaired", "pokes"), 0)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        repaired: list[Dispatch] = await write(
            self._writer, RepairApprovals(now=self._clock.wall(), origin=self._cfg.instance)
        )
        self.counters["repaired"] += len(repaired)
        await self._enqueue(repaired)
        self.next_deadline = await self._store.next_approval_deadline()
        self._reload_router()  # requests committed while no runtime served the file
        task_status.started()
        while True:
            deadline = self.next_deadline
            if deadline is not None and deadline <= self._clock.wall():
                await self._expire()
                continue
            try:
                msg = await receive_by(self._mailbox, self._clock, deadline)
            except anyio.EndOfStream:
                return
            if msg is None:  # the deadline
                self.next_deadline = await self._store.next_approval_deadline()
                continue
            for m in self._mailbox.drain(msg, 10_000):
                match m:
                    case Poke():
                        self.counters["pokes"] += 1
                    case _:
                        assert_never(m)
            self.next_deadline = await self._store.next_approval_deadline()
            self._reload_router()

    async def _expire(self) -> None:
        now = self._clock.wall()
        op = ExpireApprovals(now=now, origin=self._cfg.instance, limit=self._cfg.batch)
        try:
            done: list[Resolved] = await write(self._writer, op)
        except StoreError as exc:
            self.last_error = str(exc)
            log.error("approval timeouts could not commit (will retry): %s", exc)
            self.next_deadline = now + self._cfg.retry_delay
            return
        queued = [r.dispatch for r in done if r.dispatch is not None]
        self.counters["approved"] += len(queued)
        self.counters["timed_out"] += len(done) - len(queued)
        for r in done:
            log.info(
                "approval %s of dispatch %s timed out: %s",
                r.approval.id,
                r.approval.dispatch_id,
                r.approval.status,
            )
        await self._enqueue(queued)
        if self._emit is not None:
            for r in done:
                if r.approval.status == "timed_out":  # its dispatch was cancelled
                    self._emit(cancelled_event(r.approval, now))
        self.next_deadline = await self._store.next_approval_deadline()

    async def _enqueue(self, dispatches: list[Dispatch]) -> None:
        if dispatches:
            await self._dispatcher.send(Enqueued([entry_from_dispatch(d) for d in dispatches]))

    def _reload_router(self) -> None:
        try:  # a full router inbox: its next expiry sweep loads the requests
            self._router.tell(Reload())
        except (MailboxFull, MailboxClosed):
            pass

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            "next_deadline": self.next_deadline,
            "last_error": self.last_error,
            **self.counters,
        }

    def __repr__(self) -> str:
        return f"<ApprovalTimer next={self.next_deadline} timed_out={self.counters['timed_out']}>"
