"""The store writer: the one actor that writes, committing state transitions in groups.

Role: take write ops from any actor, apply everything that is waiting as one
transaction (one thread hop, one commit), answer each op's reply slot.
Inbox: ``StoreMsg`` = ``Write``. Sends: replies only.
Restart type: permanent. Timers: none; a batch is whatever arrived while the previous
commit was in flight (natural group commit: no added latency at low load, large
batches at high load). With a clock it records each batch's size and commit time
(``batch_sizes``, ``commit_seconds``: the metrics), and whether the last commit
failed (``failing``: readiness).

``commit_now`` is the one way around the inbox: while the writer serves and is idle
(nothing waiting, no commit of its own in flight), a caller's small group that the
store can commit without waiting (``Store.apply_now``) commits at once in the caller's
task, counted as one of the writer's batches (``batches_now``); no write can then be
ahead of it in the inbox, so the order of commits is the order of asking. At low load a
run's pickup is then two commits in two tasks, not four wake-ups of three: the
dispatcher's passes (``actors.dispatcher.commit.flush``) and ``Runtime.enqueue`` take
it. Group commit is kept where it pays, while producers write: for ``QUIET`` after an
insert came through the inbox nothing commits around it, and an insert itself commits
around it only ``QUIET`` after the last insert (sixteen producers enqueueing at once
share commits as before; one enqueue at a time at 500/s does not wait for the writer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.histogram import LATENCY, SIZES, Histogram
from shepherd.actors.primitives.mailbox import Address, Mailbox, Reply
from shepherd.store.errors import MailboxFull, StoreError
from shepherd.store.ops import InsertDispatches, WriteOp
from shepherd.store.protocol import Store

__all__ = [
    "QUIET",
    "CommitNow",
    "StoreMsg",
    "StoreWriter",
    "Write",
    "write",
    "write_each",
    "write_many",
    "write_many_now",
]


class Write(msgspec.Struct, frozen=True):
    op: WriteOp
    reply: Reply[Any]


StoreMsg = Write

# ``StoreWriter.commit_now``: per-op results, or None (nothing written: send the ops)
CommitNow = Callable[[Sequence[WriteOp]], list[Any] | None]

# seconds after an insert during which ``commit_now`` leaves writes to the inbox (the
# module docstring): producers may be writing, and their writes share commits there
QUIET = 0.001


class StoreWriter:
    def __init__(
        self,
        store: Store,
        mailbox: Mailbox[StoreMsg],
        *,
        max_batch: int = 256,
        clock: Clock | None = None,
    ):
        self._store = store
        self._mailbox = mailbox
        self._max_batch = max_batch
        self._clock = clock
        self.batches = 0
        self.ops = 0
        self.largest_batch = 0
        self.failures = 0
        self.failing = False  # the last commit failed (cleared by the next that succeeds)
        self.last_commit = 0.0  # the clock's ``now()`` at the last successful commit
        self.last_error: str | None = None
        self.last_failure = 0.0  # the clock's ``now()`` at the last failed commit (0: none)
        self.batch_sizes = Histogram(SIZES)
        self.commit_seconds = Histogram(LATENCY)
        self.batches_now = 0  # of ``batches``: committed in the caller's task (``commit_now``)
        self._serving = False  # in ``_serve``: the inbox is being read
        self._inbox_insert = float("-inf")  # when an insert last came through the inbox
        self._insert = float("-inf")  # when an insert was last committed, either way
        self._busy = False  # a batch of the inbox is being committed

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await self._serve()
        finally:
            # whoever is still waiting for a commit learns that it will not happen
            while True:
                try:
                    pending = self._mailbox.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                pending.reply.fail(StoreError("the store writer stopped; not committed"))

    async def _serve(self) -> None:
        self._serving = True
        try:
            async for first in self._mailbox:
                self._busy = True
                try:
                    await self._commit(self._mailbox.drain(first, self._max_batch))
                finally:
                    self._busy = False
        finally:
            self._serving = False

    def commit_now(self, ops: Sequence[WriteOp]) -> list[Any] | None:
        """Commit ``ops`` in the caller's task when the writer is idle and the store can
        without waiting (the module docstring); per-op results, or None: nothing was
        written, send them. A failed transaction raises its StoreError."""
        if not self._serving or self._busy or self._mailbox.depth:
            return None
        began = self._clock.now() if self._clock is not None else 0.0
        inserts = any(type(op) is InsertDispatches for op in ops)
        if began - (self._insert if inserts else self._inbox_insert) < QUIET:
            return None  # producers are writing: their writes share commits in the inbox
        try:
            results = self._store.apply_now(ops)
        except StoreError as exc:
            self._failed(exc)
            raise
        if results is not None:
            self.batches_now += 1
            self._committed(len(ops), began)
            if inserts and self._clock is not None:
                self._insert = self.last_commit
        return results

    def _failed(self, exc: StoreError) -> None:
        self.last_error = str(exc)
        self.failures += 1
        self.failing = True
        if self._clock is not None:
            self.last_failure = self._clock.now()

    def _committed(self, size: int, began: float) -> None:
        self.batches += 1
        self.ops += size
        self.largest_batch = max(self.largest_batch, size)
        self.failing = False
        if self._clock is not None:
            self.last_commit = self._clock.now()
            self.commit_seconds.observe(self.last_commit - began)
            self.batch_sizes.observe(size)

    async def _commit(self, batch: list[Write]) -> None:
        began = self._clock.now() if self._clock is not None else 0.0
        try:
            results = await self._store.apply([w.op for w in batch])
        except StoreError as exc:
            # The transaction rolled back: every op in it failed, none is half-done.
            self._failed(exc)
            for w in batch:
                w.reply.fail(exc)
            return
        except BaseException as exc:
            for w in batch:
                w.reply.fail(StoreError(f"store writer stopped: {exc!r}"))
            raise
        self._committed(len(batch), began)
        if self._clock is not None and any(type(w.op) is InsertDispatches for w in batch):
            self._inbox_insert = self._insert = self.last_commit
        for w, result in zip(batch, results, strict=True):
            if isinstance(result, StoreError):
                w.reply.fail(result)
            else:
                w.reply.set(result)

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            "batches": self.batches,
            "batches_now": self.batches_now,
            "ops": self.ops,
            "largest_batch": self.largest_batch,
            "mean_batch": round(self.ops / self.batches, 2) if self.batches else 0.0,
            "failures": self.failures,
            "failing": self.failing,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<StoreWriter batches={self.batches} ops={self.ops}>"


async def write(address: Address[StoreMsg], op: WriteOp) -> Any:
    """Send one op to the writer and wait until it is committed."""
    reply: Reply[Any] = Reply()
    await address.send(Write(op, reply))
    return await reply.wait()


async def write_many(address: Address[StoreMsg], ops: Sequence[WriteOp]) -> list[Any]:
    """Send several ops at once; they land in one commit (unless the writer's batch is
    full or it is already committing an earlier one: then in consecutive commits). The
    first failed op's StoreError is raised."""
    return [await r.wait() for r in await _send_all(address, ops)]


async def write_many_now(
    address: Address[StoreMsg], ops: Sequence[WriteOp], commit_now: CommitNow | None
) -> list[Any]:
    """``write_many``, committed in the caller's task when ``commit_now`` (the writer's)
    can; the first failed op's StoreError is raised either way."""
    results = commit_now(ops) if commit_now is not None else None
    if results is None:
        return await write_many(address, ops)
    for result in results:
        if isinstance(result, StoreError):
            raise result
    return results


async def write_each(address: Address[StoreMsg], ops: Sequence[WriteOp]) -> list[Any]:
    """``write_many``, but a failed op's StoreError is its result: nothing raises."""
    out: list[Any] = []
    for reply in await _send_all(address, ops):
        try:
            out.append(await reply.wait())
        except StoreError as exc:
            out.append(exc)
    return out


async def _send_all(address: Address[StoreMsg], ops: Sequence[WriteOp]) -> list[Reply[Any]]:
    """Put every op in the writer's mailbox without yielding in between (``send``
    yields before each message, so an idle writer would wake on the first op and commit
    it alone); only a full mailbox waits."""
    replies: list[Reply[Any]] = []
    for op in ops:
        reply: Reply[Any] = Reply()
        try:
            address.tell(Write(op, reply))
        except MailboxFull:
            await address.send(Write(op, reply))
        replies.append(reply)
    return replies
