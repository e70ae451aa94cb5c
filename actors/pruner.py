"""The pruner: retention passes in bounded batches, and the WAL checkpoint.

Role: keeps the database from growing without bound. Every ``retention.interval``
(the first pass a minute after start, or one interval if that is shorter) it runs a
pass: the retention rules in order, each as a series of write ops of at most
``batch_size`` rows (``store/ops/retention.py``), every op its own group-commit op
through the store writer. After each batch it pauses as long as the batch took, so the writer
spends at most about half its time on pruning and other actors' commits never queue
behind a long delete. Every ``checkpoint_every`` seconds (the runtime's
``health_interval``) it runs the store's PASSIVE WAL checkpoint, between batches too;
while each checkpoint finds new frames in the log, the next one starts
``checkpoint_soon`` (50 ms) after the last one started (at once if that one took
longer). A checkpoint's disk syncs take as long as the log it flushes is big, and a
commit that writes into the WAL page being flushed waits for it (ext4 waits for the
page's write to finish), so small, frequent flushes keep every commit's stall short: at
500 jobs/s, one checkpoint each 2 s held commits up to ~200 ms; one each 50 ms, ~5 ms.

The rules, their defaults and their order are ``actors/retention.py`` (pure); the
rows each selects are the store's (``store/ops/retention.py``).

Inbox: ``PrunerMsg`` = ``PruneNow`` (a pass now, the reply gets its counts) | ``Stop``;
capacity 16 (operator requests only). Sends: prune ops to the store writer; calls the
store's ``checkpoint()``. Restart type: permanent (a restart re-arms both timers).
Timers: the next pass, the next checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, assert_never

import anyio
import msgspec
from anyio.abc import TaskStatus

from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Mailbox, Reply, receive_by
from shepherd.actors.retention import (
    KINDS,
    RetentionConfig,
    first_pass_at,
    follow,
    kind_of,
    plan,
    summary,
)
from shepherd.actors.writer import StoreMsg, write
from shepherd.store import keys
from shepherd.store.errors import StoreError
from shepherd.store.ops import Pruned, PruneOp

__all__ = ["Checkpointer", "PruneNow", "Pruner", "PrunerMsg", "Stop"]

log = logging.getLogger("shepherd.pruner")


class PruneNow(msgspec.Struct, frozen=True, tag=True):
    """Run a pass now; ``reply`` gets its rows per kind once it has ended."""

    reply: Reply[dict[str, int]] | None = None


class Stop(msgspec.Struct, frozen=True, tag=True):
    """Exit; a pass in progress stops after its current batch."""


PrunerMsg = PruneNow | Stop


class Checkpointer(Protocol):
    async def checkpoint(self) -> int:
        """The frames the log gained since the last one (0: nothing was written)."""
        ...


class Pruner:
    def __init__(
        self,
        cfg: RetentionConfig,
        *,
        writer: Address[StoreMsg],
        mailbox: Mailbox[PrunerMsg],
        clock: Clock,
        store: Checkpointer,
        checkpoint_every: float = 2.0,
        checkpoint_soon: float = 0.05,
        key_lifetime: float = keys.DEFAULT_TTL,
    ) -> None:
        self._cfg = cfg
        self._writer = writer
        self._mailbox = mailbox
        self._clock = clock
        self._store = store
        self._checkpoint_every = checkpoint_every
        self._checkpoint_soon = min(checkpoint_soon, checkpoint_every)
        self._key_lifetime = key_lifetime
        self.pruned = dict.fromkeys(KINDS, 0)
        self.passes = self.batches = self.checkpoints = self.checkpoint_frames = 0
        self.last_pass: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._waiting: list[Reply[dict[str, int]]] = []
        self._stopping = False
        self._next_pass = self._next_checkpoint = 0.0  # armed by run()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        now = self._clock.wall()
        self._next_pass = first_pass_at(now, self._cfg)
        self._next_checkpoint = now + self._checkpoint_every
        self._stopping = False
        task_status.started()
        try:
            while not self._stopping:
                try:
                    msg = await receive_by(
                        self._mailbox, self._clock, min(self._next_pass, self._next_checkpoint)
                    )
                except anyio.EndOfStream:
                    return
                if msg is not None:
                    self._handle(msg)
                if self._stopping:
                    return
                if self._clock.wall() >= self._next_checkpoint:
                    await self._checkpoint()
                if self._clock.wall() >= self._next_pass:
                    await self._pass()
        finally:
            for reply in self._waiting:
                reply.fail(StoreError("the pruner stopped"))
            self._waiting.clear()

    def _handle(self, msg: PrunerMsg) -> None:
        match msg:
            case PruneNow():
                if msg.reply is not None:
                    self._waiting.append(msg.reply)
                self._next_pass = min(self._next_pass, self._clock.wall())
            case Stop():
                self._stopping = True
            case _:
                assert_never(msg)

    async def _pass(self) -> None:
        started, at = self._clock.now(), self._clock.wall()
        counts = dict.fromkeys(KINDS, 0)
        error: str | None = None
        try:
            for first in plan(self._cfg, at, key_lifetime=self._key_lifetime):
                op: PruneOp | None = first
                while op is not None and not self._stopping:
                    t0 = self._clock.now()
                    result: Pruned = await write(self._writer, op)
                    self.batches += 1
                    counts[kind_of(op)] += result.deleted
                    counts["runs"] += result.runs
                    op = follow(op, result)
                    await self._between_batches(self._clock.now() - t0)
        except StoreError as exc:
            error = self.last_error = str(exc)
            log.warning("retention pass stopped: %s", exc)
        seconds = self._clock.now() - started
        self.passes += 1
        for kind, n in counts.items():
            self.pruned[kind] += n
        self.last_pass = {"at": at, "seconds": round(seconds, 3), "pruned": counts}
        self._next_pass = self._clock.wall() + float(self._cfg.interval)
        if any(counts.values()):
            log.info("pruned %s in %.2fs", summary(counts), seconds)
        for reply in self._waiting:
            if error is None:
                reply.set(dict(counts))
            else:
                reply.fail(StoreError(error))
        self._waiting.clear()

    async def _between_batches(self, took: float) -> None:
        """Give the writer back (pause as long as the batch took), checkpoint when due,
        and look at the inbox: a ``Stop`` ends the pass here."""
        await self._clock.sleep_until(self._clock.now() + took)
        if self._clock.wall() >= self._next_checkpoint:
            await self._checkpoint()
        while True:
            try:
                self._handle(self._mailbox.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                return

    async def _checkpoint(self) -> None:
        started = self._clock.wall()
        self._next_checkpoint = started + self._checkpoint_every
        try:
            copied = await self._store.checkpoint()
            self.checkpoints += 1
            self.checkpoint_frames += copied
            if copied:  # the log is moving: flush it again soon, while it is small
                self._next_checkpoint = started + self._checkpoint_soon
        except StoreError as exc:
            self.last_error = str(exc)
            log.warning("WAL checkpoint failed: %s", exc)

    def statistics(self) -> dict[str, Any]:
        return {
            "inbox": self._mailbox.depth,
            "passes": self.passes,
            "batches": self.batches,
            "pruned": dict(self.pruned),
            "last_pass": self.last_pass,
            "checkpoints": self.checkpoints,
            "checkpoint_frames": self.checkpoint_frames,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<Pruner passes={self.passes} every {float(self._cfg.interval):g}s>"
