"""``RuntimeHost``: the ``Host`` (``actors/executors/host.py``) a runtime gives its runs.

It holds only what the host's questions need — the store (reads), the store writer
(message marks, process groups), the process journal where the runtime owns its
database (``actors/executors/journal.py``), the router's address (deliveries) — and,
for the one job change an executor may make (a watchdog retiring itself), the jobs
side's ``retire`` function, which tells the dispatcher, the scheduler and the router as
any job removal does. Runs never see the ``Runtime``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from shepherd.actors.executors.journal import ProcessJournal
from shepherd.actors.executors.procs import ProcessId
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, Reply, ask
from shepherd.actors.router import Announce, RouterMsg
from shepherd.actors.writer import StoreMsg, Write, write
from shepherd.runtime.config import Config
from shepherd.store.errors import ConfigError, MailboxFull, NotFound
from shepherd.store.factory import is_postgres
from shepherd.store.models import JobRow, Message, Run
from shepherd.store.ops import MarkMessages, RecordProcess
from shepherd.store.protocol import Store

__all__ = ["RuntimeHost", "process_journal"]

log = logging.getLogger("shepherd.procs")


def process_journal(cfg: Config, node: str) -> ProcessJournal | None:
    """The journal of the runtime ``node`` where it owns its database (SQLite: it holds
    the file's lock), else None: every group's record is committed before its command
    starts (``actors/executors/journal.py``)."""
    return None if is_postgres(cfg.database) else ProcessJournal(cfg.artifacts_dir, node)


class RuntimeHost:
    def __init__(
        self,
        *,
        store: Store,
        writer: Address[StoreMsg],
        router: Address[RouterMsg],
        clock: Clock,
        retire: Callable[[str], Awaitable[None]],
        journal: ProcessJournal | None = None,
    ) -> None:
        self._journal = journal
        self._store = store
        self._writer = writer
        self._router = router
        self._clock = clock
        self._retire = retire

    async def inbox(self, agent: str, *, limit: int) -> list[Message]:
        return await self._store.inbox(agent, limit=limit, now=self._clock.wall())

    async def mark_delivered(self, ids: Sequence[int]) -> int:
        op = MarkMessages(list(ids), "delivered", self._clock.wall())
        n: int = await write(self._writer, op)
        return n

    async def run(self, run_id: int) -> Run:
        run = await self._store.run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    async def job(self, name: str) -> JobRow:
        row = await self._store.job(name)
        if row is None:
            raise NotFound(f"no job named {name!r}")
        return row

    async def retire_job(self, name: str) -> None:
        try:
            await self._retire(name)
        except NotFound:
            pass  # removed already

    async def deliver(
        self,
        body: str,
        *,
        to: str | None,
        channel: str | None,
        kind: str,
        job: str | None,
        run_id: int | None,
        dispatch_id: int | None,
        outcome: str | None,
    ) -> int:
        if not body.strip():
            raise ConfigError("must not be empty", field="body")
        if not (to or channel):
            raise ConfigError("a delivery needs a target or a channel", field="to")
        delivery_id: int = await ask(
            self._router,
            lambda reply: Announce(
                body=body, to=to, channel=channel, kind=kind, reply=reply, job=job,
                run_id=run_id, dispatch_id=dispatch_id, outcome=outcome,
            ),
        )  # fmt: skip
        return delivery_id

    async def record_process(self, run_id: int, proc: ProcessId) -> None:
        """On record once this returns: in the journal (its commit not waited for) on a
        database this runtime owns, else committed (``actors/executors/journal.py``)."""
        op = RecordProcess(run_id=run_id, pgid=proc.pgid, start=proc.start, clock=proc.clock)
        journal = self._journal
        if journal is not None:
            committed: Reply[Any] = Reply()
            try:
                journal.note(run_id, proc, committed)
            except OSError as exc:  # it cannot be written: wait for the commits from now on
                log.warning("process journal %s: %s; waiting for commits", journal.path, exc)
                self._journal = None
            else:
                try:
                    self._writer.tell(Write(op, committed))
                except MailboxFull:
                    await self._writer.send(Write(op, committed))
                return
        await write(self._writer, op)

    def __repr__(self) -> str:
        return f"<RuntimeHost router={self._router.name}>"
