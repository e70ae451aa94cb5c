"""The dispatch side of ``Runtime``: wait for, cancel and look up dispatches and runs,
and manage dead letters.

``QueriesApi`` is a plain collaborator the ``Runtime`` façade holds; it owns no state:
it reads the store, writes through the store writer, asks the dispatcher (``cancel``)
and waits on the event hub (``wait``).
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from shepherd.actors.messages import Cancel, DispatcherMsg, Enqueued, entry_from_dispatch
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, ask
from shepherd.actors.writer import StoreMsg, write
from shepherd.runtime.events import EventHub
from shepherd.store.errors import NotFound
from shepherd.store.models import Dispatch, Run
from shepherd.store.ops import CancelChain, PurgeDead, RetryDead
from shepherd.store.protocol import Store

__all__ = ["QueriesApi"]

FINAL = ("done", "dead", "cancelled")


class QueriesApi:
    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        instance: str,
        events: EventHub,
        writer: Address[StoreMsg],
        dispatcher: Address[DispatcherMsg],
    ) -> None:
        self.clock = clock
        self.store = store
        self.instance = instance
        self.events = events
        self._writer = writer
        self._dispatcher = dispatcher

    # -- following dispatches ------------------------------------------------------

    async def wait(self, dispatch_id: int, timeout: float | None = None) -> Dispatch:
        """Wait until the dispatch is final (done, dead or cancelled) and return it."""
        event = self.events.waiter(dispatch_id)
        try:
            d = await self.dispatch(dispatch_id)
            if d.status in FINAL:
                return d
            with anyio.fail_after(timeout):
                await event.wait()
        finally:
            self.events.forget(dispatch_id, event)
        return await self.dispatch(dispatch_id)

    async def cancel(self, dispatch_id: int, *, cascade: bool = False) -> str | None:
        """Cancel a queued dispatch (now) or a running one (its run is cancelled and
        recorded ``cancelled``). Returns the dispatch's status at the time of the call.
        ``cascade``: also cancel the chain dispatches not yet started that descend from
        its runs (recursively; README "Chains"), even when it has itself ended."""
        status = await self._cancel(dispatch_id)
        if cascade and status is not None:
            ids: list[int] = await write(self._writer, CancelChain(dispatch_id, self.clock.wall()))
            for child in ids:  # out of the dispatcher's queue, with their cancelled events
                await self._cancel(child)
        return status

    async def _cancel(self, dispatch_id: int) -> str | None:
        status: str | None = await ask(self._dispatcher, lambda r: Cancel(dispatch_id, r))
        return status

    async def dispatch(self, dispatch_id: int) -> Dispatch:
        d = await self.store.dispatch(dispatch_id)
        if d is None:
            raise NotFound(f"no dispatch {dispatch_id}")
        return d

    async def dispatches(
        self,
        *,
        status: str | Sequence[str] | None = None,
        job: str | None = None,
        limit: int = 100,
        before: int | None = None,
        priority: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Dispatch]:
        """Newest first; ``before``: ids below it (the next page of a keyset listing),
        ``since`` / ``until``: created_at in [since, until)."""
        return await self.store.dispatches(
            status=status, job=job, limit=limit, before=before, priority=priority,
            agent=agent, since=since, until=until,
        )  # fmt: skip

    async def runs(
        self,
        *,
        job: str | None = None,
        status: str | Sequence[str] | None = None,
        dispatch_id: int | None = None,
        limit: int = 100,
        before: int | None = None,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Run]:
        """Newest first; ``before``, ``since`` / ``until`` (started_at) as ``dispatches``."""
        return await self.store.runs(
            job=job, status=status, dispatch_id=dispatch_id, limit=limit, before=before,
            agent=agent, since=since, until=until,
        )  # fmt: skip

    async def run(self, run_id: int) -> Run:
        r = await self.store.run(run_id)
        if r is None:
            raise NotFound(f"no run {run_id}")
        return r

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, *, job: str | None = None, limit: int = 100, before: int | None = None
    ) -> list[Dispatch]:
        return await self.dispatches(status="dead", job=job, limit=limit, before=before)

    async def retry_dead(self, ids: Sequence[int]) -> list[int]:
        """Put dead letters back in the queue with fresh attempts."""
        done: list[int] = await write(
            self._writer, RetryDead(list(ids), self.clock.wall(), origin=self.instance)
        )
        entries = [entry_from_dispatch(await self.dispatch(i)) for i in done]
        if entries:
            await self._dispatcher.send(Enqueued(entries))
        return done

    async def purge_dead(
        self, ids: Sequence[int] | None = None, *, older_than: float | None = None
    ) -> int:
        before = self.clock.wall() - older_than if older_than is not None else None
        n: int = await write(
            self._writer, PurgeDead(list(ids) if ids is not None else None, before)
        )
        return n
