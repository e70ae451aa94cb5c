"""The messaging side of ``Runtime``: inboxes, deliveries, sinks, the gateway executors.

``Messaging`` is a plain collaborator the ``Runtime`` façade holds. It owns the sink
registry (the router reads it); it writes messages through the store writer, reads
them from the store, and tells the router about new sinks, retried deliveries and
forgotten jobs.

    rt.register_delivery_sink("ops", send_to_ops)          # async fn(Delivery) -> None
    await rt.send_message("ops", "main", "disk at 91%", kind="fact")
    await rt.inbox("main")                                # pending, in OCS inbox order
    await rt.deliveries(status="failed")                  # what could not be delivered
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from shepherd.actors.executors.agent import AgentExecutor
from shepherd.actors.executors.base import Executor
from shepherd.actors.executors.event import EventExecutor
from shepherd.actors.executors.gateway import HttpClient
from shepherd.actors.executors.watchdog import WatchdogExecutor
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address, ask
from shepherd.actors.router import Announce, ForgetJobs, Reload, RouterMsg, SinkFn
from shepherd.actors.writer import StoreMsg, write
from shepherd.runtime.config import Config
from shepherd.runtime.spawn import Spawner
from shepherd.store.bounds import check_value
from shepherd.store.errors import ConfigError, MailboxClosed, MailboxFull, NotFound
from shepherd.store.models import (
    DELIVERY_STATES,
    EXPIRES_IN,
    MESSAGE_KINDS,
    MESSAGE_STATES,
    Delivery,
    Message,
)
from shepherd.store.ops import InsertMessages, MarkMessages, NewMessage, RequeueDeliveries
from shepherd.store.protocol import Store

__all__ = ["Messaging", "gateway_executors", "new_message"]

MAX_BODY = 100_000


def gateway_executors(cfg: Config, http: HttpClient, clock: Clock) -> dict[str, Executor]:
    """``agent`` and ``event`` (they reject jobs when ``cfg.gateway`` is None) and
    ``watchdog`` (needs no gateway: it alerts through the router's sinks)."""
    return {
        "agent": AgentExecutor(cfg.gateway, http),
        "event": EventExecutor(cfg.gateway, http),
        "watchdog": WatchdogExecutor(clock=clock),
    }


def new_message(
    from_agent: str,
    to_agent: str,
    body: str,
    *,
    now: float,
    kind: str = "text",
    subject: str | None = None,
    priority: int = 0,
    expires_in: float | None = None,
    metadata: dict[str, Any] | None = None,
    channel: str | None = None,
    delivery_to: str | None = None,
    job_id: int | None = None,
    run_id: int | None = None,
    owner: str | None = None,
    reply_to: int | None = None,
) -> NewMessage:
    """The row ``send_message`` writes (the CLI's ``msg send`` too), every field checked."""
    for field, value in (("from_agent", from_agent), ("to_agent", to_agent), ("body", body)):
        if not value or not value.strip():
            raise ConfigError("must not be empty", field=field)
    if kind not in MESSAGE_KINDS:
        raise ConfigError(
            f"invalid message kind {kind!r}; valid: {', '.join(MESSAGE_KINDS)}", field="kind"
        )
    if priority not in (0, 1, 2):
        raise ConfigError("must be 0 (normal), 1 (high) or 2 (urgent)", field="priority")
    if len(body) > MAX_BODY:
        raise ConfigError(f"longer than {MAX_BODY} characters", field="body")
    if expires_in is not None:
        check_value(expires_in, EXPIRES_IN, field="expires_in")
    return NewMessage(
        from_agent=from_agent, to_agent=to_agent, body=body, kind=kind, subject=subject,
        priority=priority, metadata=msgspec.json.encode(metadata) if metadata else None,
        channel=channel, delivery_to=delivery_to,
        expires_at=now + expires_in if expires_in is not None else None,
        job_id=job_id, run_id=run_id, owner=owner, reply_to=reply_to,
    )  # fmt: skip


class Messaging:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        writer: Address[StoreMsg],
        router: Address[RouterMsg],
        spawner: Spawner | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self._writer = writer
        self._router = router
        self._spawner = spawner
        self.sinks: dict[str, SinkFn] = {}

    def _tell_router(self, msg: RouterMsg) -> bool:
        try:
            self._router.tell(msg)
        except (MailboxFull, MailboxClosed):
            return False
        return True

    def forget_job(self, job_id: int) -> None:
        self._tell_router(ForgetJobs([job_id]))

    # -- delivery sinks and deliveries ------------------------------------------------

    def register_delivery_sink(self, name: str, fn: SinkFn) -> None:
        """Deliveries whose channel (or the default sink) is ``name`` go to ``fn``:
        ``async def fn(delivery: Delivery) -> None``; raising = a failed attempt."""
        if not name or not callable(fn):
            raise ConfigError("a delivery sink needs a name and an async callable", field="sink")
        self.sinks[name] = fn
        self._tell_router(Reload())  # deliveries waiting for this sink may go now

    async def deliver(
        self,
        body: str,
        *,
        to: str | None = None,
        channel: str | None = None,
        kind: str = "api",
        job: str | None = None,
        run_id: int | None = None,
        dispatch_id: int | None = None,
        outcome: str | None = None,
    ) -> int:
        """Queue a delivery (retried until sent); returns its id once it is committed."""
        if not body.strip():
            raise ConfigError("must not be empty", field="body")
        if not (to or channel):
            raise ConfigError("a delivery needs a target or a channel", field="to")
        return await ask(
            self._router,
            lambda reply: Announce(
                body=body,
                to=to,
                channel=channel,
                kind=kind,
                reply=reply,
                job=job,
                run_id=run_id,
                dispatch_id=dispatch_id,
                outcome=outcome,
            ),
        )

    async def deliveries(
        self,
        *,
        status: str | None = None,
        job: str | None = None,
        run_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        if status is not None and status not in DELIVERY_STATES:
            raise ConfigError(f"expected one of {', '.join(DELIVERY_STATES)}", field="status")
        return await self.store.deliveries(status=status, job=job, run_id=run_id, limit=limit)

    async def retry_deliveries(self, ids: Sequence[int]) -> list[int]:
        """Failed deliveries → pending again, with a fresh attempt budget."""
        done: list[int] = await write(self._writer, RequeueDeliveries(list(ids), self.clock.wall()))
        if done:
            self._tell_router(Reload())
        return done

    # -- inbox messages ------------------------------------------------------------------

    async def send_message(
        self,
        from_agent: str,
        to_agent: str,
        body: str,
        *,
        kind: str = "text",
        subject: str | None = None,
        priority: int = 0,
        expires_in: float | None = None,
        metadata: dict[str, Any] | None = None,
        channel: str | None = None,
        delivery_to: str | None = None,
        job_id: int | None = None,
        run_id: int | None = None,
        owner: str | None = None,
        reply_to: int | None = None,
    ) -> int:
        """Put a message in ``to_agent``'s inbox (``broadcast``: every agent's).
        Errors name the argument (``new_message``); nothing is stored.

        A ``spawn`` message's body is a job spec (``runtime/spawn.py``): in the same
        transaction it becomes a one-shot job with its dispatch and the message is
        ``delivered``, or, when the spec is refused, the message is ``failed`` with the
        error in ``last_error`` (``rt.message(id)``). Either way its id is returned."""
        now = self.clock.wall()
        row = new_message(
            from_agent, to_agent, body, now=now, kind=kind, subject=subject, priority=priority,
            expires_in=expires_in, metadata=metadata, channel=channel, delivery_to=delivery_to,
            job_id=job_id, run_id=run_id, owner=owner, reply_to=reply_to,
        )  # fmt: skip
        if reply_to is not None and await self.store.message(reply_to) is None:
            raise ConfigError(f"no message {reply_to}", field="reply_to")
        if kind == "spawn" and self._spawner is not None:
            return (await self._spawner.send(row)).message_id
        ids: list[int] = await write(self._writer, InsertMessages([row], now))
        return ids[0]

    async def inbox(
        self, agent: str, *, status: str | Sequence[str] = "pending", limit: int = 100
    ) -> list[Message]:
        """``agent``'s messages (and broadcasts) in OCS inbox order, unexpired."""
        statuses = (status,) if isinstance(status, str) else tuple(status)
        for s in statuses:
            if s not in MESSAGE_STATES:
                raise ConfigError(f"expected one of {', '.join(MESSAGE_STATES)}", field="status")
        return await self.store.inbox(agent, statuses=statuses, limit=limit, now=self.clock.wall())

    async def messages(
        self,
        *,
        to_agent: str | None = None,
        from_agent: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Message]:
        return await self.store.messages(
            to_agent=to_agent, from_agent=from_agent, status=status, limit=limit
        )

    async def mark_delivered(self, ids: Sequence[int]) -> int:
        """Pending → delivered (the agent executor calls this once a turn is accepted)."""
        n: int = await write(self._writer, MarkMessages(list(ids), "delivered", self.clock.wall()))
        return n

    async def mark_read(self, ids: Sequence[int]) -> int:
        n: int = await write(self._writer, MarkMessages(list(ids), "read", self.clock.wall()))
        return n

    async def ack(self, ids: Sequence[int]) -> int:
        """Acknowledge (any status; pending / delivered ones become read)."""
        n: int = await write(self._writer, MarkMessages(list(ids), "ack", self.clock.wall()))
        return n

    async def message(self, message_id: int) -> Message:
        msg = await self.store.message(message_id)
        if msg is None:
            raise NotFound(f"no message {message_id}")
        return msg

    async def thread(self, message_id: int) -> list[Message]:
        """The conversation ``message_id`` belongs to: its root and every reply, oldest
        first."""
        await self.message(message_id)
        return await self.store.thread(message_id)
