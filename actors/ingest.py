"""Ingest: wake-ups from other processes.

Role: another process (the CLI, a second producer) that commits a dispatch, a job
change or a cancel request sends one datagram to this runtime's wake socket; the
ingest actor turns it into a ``Poke`` for the dispatcher, which then reads only what
is new (by sequence number). No polling tick sits on this path: a dispatch enqueued
from another process starts within milliseconds.
Inbox: the unix datagram socket. Sends: ``Poke`` to the dispatcher, and to the
scheduler when jobs changed (``"j"``). Restart type: permanent. Timers: none.

The socket lives in the temp directory under a name derived from the database path, so
every process that opens the same file finds it; a sender with no runtime listening
simply has nobody to wake (the next runtime start loads everything queued).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
from typing import Any

import anyio
from anyio.abc import TaskStatus

from actors.mailbox import Address
from actors.messages import DispatcherMsg, Poke, SchedulerMsg
from store.errors import MailboxClosed, MailboxFull

__all__ = ["Ingest", "send_wake", "wake_path"]


def wake_path(db_path: str) -> str:
    digest = hashlib.sha256(os.path.abspath(db_path).encode()).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"shepherd-{digest}.wake")


def send_wake(db_path: str, what: str = "d") -> bool:
    """Tell the runtime serving ``db_path`` (if any) to look at the store. Never raises."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(what.encode(), wake_path(db_path))
        return True
    except OSError:
        return False


class Ingest:
    def __init__(
        self,
        db_path: str,
        dispatcher: Address[DispatcherMsg],
        scheduler: Address[SchedulerMsg] | None = None,
    ) -> None:
        self._path = wake_path(db_path)
        self._dispatcher = dispatcher
        self._scheduler = scheduler
        self.wakes = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        sock = await anyio.create_unix_datagram_socket(local_path=self._path)
        try:
            async with sock:
                task_status.started()
                while True:
                    data, _ = await sock.receive()
                    self.wakes += 1
                    what = data.decode(errors="replace")[:8]
                    with contextlib.suppress(MailboxFull):
                        await self._dispatcher.send(Poke(what))
                    if self._scheduler is not None and "j" in what:
                        with contextlib.suppress(MailboxFull, MailboxClosed):
                            self._scheduler.tell(Poke(what))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._path)

    def statistics(self) -> dict[str, Any]:
        return {"socket": self._path, "wakes": self.wakes}

    def __repr__(self) -> str:
        return f"<Ingest {self._path} wakes={self.wakes}>"
