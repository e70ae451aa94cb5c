"""Ingest: wake-ups from other processes.

Role: another process (the CLI, a second producer) that commits a dispatch, a job
change or a cancel request sends one datagram to this runtime's wake socket; the
ingest actor turns what is waiting into one ``Poke`` for the dispatcher, which then
reads only what is new (by sequence number). No polling tick sits on this path: a
dispatch enqueued from another process starts within milliseconds.
Inbox: the unix datagram socket. Sends: ``Poke`` to the dispatcher, and to the
scheduler when jobs changed (``Poke.jobs``) or a cancel or a decision may have ended a
fired one-shot's dispatch (``Poke.cancels``, ``Poke.approvals``), to the task-group
actor when groups changed (``Poke.groups``), to the approvals actor when approvals were
committed (``Poke.approvals``); when jobs changed it first drops the jobs the enqueue
path holds (``forget_jobs``), so a job disabled or changed by another process is seen
as it is now by the next enqueue. Restart type: permanent. Timers: none.

- **Merged**: each pass takes every datagram already waiting (up to `MAX_DRAIN`) and
  sends one ``Poke`` carrying the union of their flags (`merge_wakes`), so a producer
  committing one dispatch at a time costs one reload per pass, not one per datagram.
- **Nothing lost at start**: the dispatcher and the scheduler load the store before this
  actor binds; a commit made in between found no socket to wake. Right after the bind
  it sends one ``Poke`` of every kind (`CATCH_UP`), so both read what is newer than
  their load. The same holds after a restart of this actor alone.

- **The store's own wake-ups**: given the ``store``, the actor also turns what
  ``Store.wakeups()`` yields (PostgreSQL: LISTEN/NOTIFY, so commits from other nodes
  and plain SQL inserts) into Pokes the same way; SQLite's never yields.

The socket lives in the temp directory under a name derived from the database path, so
every process that opens the same file finds it; a sender with no runtime listening
simply has nobody to wake (the next runtime start loads everything queued). A full
socket queue drops a datagram; one already waiting covers it (it is read after the
dropped sender's commit).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from anyio.abc import SocketAttribute, TaskStatus

from shepherd.actors.messages import DispatcherMsg, Poke, SchedulerMsg
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.socket_path import send_wake, wake_path
from shepherd.store.errors import MailboxClosed, MailboxFull, os_error
from shepherd.store.protocol import Store

__all__ = ["CATCH_UP", "MAX_DRAIN", "Ingest", "merge_wakes", "send_wake", "wake_path"]

# everything a wake-up can mean
CATCH_UP = Poke(
    dispatches=True,
    jobs=True,
    cancels=True,
    approvals=True,
    groups=True,
    agents=True,
    controls=True,
)
MAX_DRAIN = 4096  # datagrams merged into one Poke at most (the socket queue is smaller)


def merge_wakes(datagrams: Iterable[bytes]) -> Poke:
    """Several wake-ups as one ``Poke``: the union of their flags (a datagram carries
    ``d`` for dispatches, ``j`` for jobs, ``c`` for cancels, ``a`` for approvals, ``g``
    for task groups, ``A`` for agents, ``p`` for pauses and rate limits, ``-`` to only
    wake)."""
    flags: set[str] = set()
    for data in datagrams:
        flags.update(data[:8].decode(errors="replace"))
    return Poke(
        dispatches="d" in flags,
        jobs="j" in flags,
        cancels="c" in flags,
        approvals="a" in flags,
        groups="g" in flags,
        agents="A" in flags,
        controls="p" in flags,
    )


class Ingest:
    def __init__(
        self,
        db_path: str,
        dispatcher: Address[DispatcherMsg],
        scheduler: Address[SchedulerMsg] | None = None,
        *,
        groups: Address[Any] | None = None,
        approvals: Address[Any] | None = None,
        store: Store | None = None,
        forget_jobs: Callable[[], None] | None = None,
    ) -> None:
        self._path = wake_path(db_path)
        self._forget_jobs = forget_jobs  # drops the producers' cached jobs (``Poke.jobs``)
        self._store = store  # its ``wakeups()`` are heard too
        self._dispatcher = dispatcher
        self._scheduler = scheduler
        self._groups = groups  # the task-group actor (``Poke.groups``)
        self._approvals = approvals  # the approvals actor (``Poke.approvals``)
        self.wakes = 0  # datagrams received
        self.pokes = 0  # Pokes sent to the dispatcher (the catch-up one included)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        try:
            sock = await anyio.create_unix_datagram_socket(local_path=self._path)
        except OSError as exc:  # a full or read-only temp directory: a store-level fault
            raise os_error(exc, f"wake socket {self._path}") from None
        raw = sock.extra(SocketAttribute.raw_socket)  # non-blocking: for the drain
        try:
            async with sock, anyio.create_task_group() as tg:
                if self._store is not None:
                    tg.start_soon(self._hear_store, self._store)
                task_status.started()
                poke = CATCH_UP
                while True:
                    await self._poke(poke)
                    data, _ = await sock.receive()
                    waiting = [data]
                    while len(waiting) < MAX_DRAIN:
                        try:
                            waiting.append(raw.recv(64))
                        except BlockingIOError:
                            break
                    self.wakes += len(waiting)
                    poke = merge_wakes(waiting)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._path)

    async def _hear_store(self, store: Store) -> None:
        async for flags in store.wakeups():
            self.wakes += 1
            await self._poke(merge_wakes([flags.encode()]))

    async def _poke(self, poke: Poke) -> None:
        self.pokes += 1
        if poke.jobs and self._forget_jobs is not None:  # before anyone acts on the poke
            self._forget_jobs()
        with contextlib.suppress(MailboxFull):
            await self._dispatcher.send(poke)
        if self._scheduler is not None and (poke.jobs or poke.approvals or poke.cancels):
            with contextlib.suppress(MailboxFull, MailboxClosed):  # a cancel may end a one-shot
                self._scheduler.tell(poke)
        if self._groups is not None and poke.groups:
            with contextlib.suppress(MailboxFull, MailboxClosed):
                self._groups.tell(poke)
        if self._approvals is not None and poke.approvals:
            with contextlib.suppress(MailboxFull, MailboxClosed):
                self._approvals.tell(poke)

    def statistics(self) -> dict[str, Any]:
        return {"socket": self._path, "wakes": self.wakes, "pokes": self.pokes}

    def __repr__(self) -> str:
        return f"<Ingest {self._path} wakes={self.wakes} pokes={self.pokes}>"
