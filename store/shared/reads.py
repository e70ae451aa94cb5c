"""The protocol's plain reads, one line each, shared by both engines.

Each engine's area modules name their read functions alike (``queries.get_job``,
``messages.inbox``, ``groups.open_groups`` ...): an engine subclasses ``EngineReads``,
names its modules in ``sql`` (a ``ReadModules``) and implements ``read(fn, *args)`` — a
hop to SQLite's reader thread, or a pooled PostgreSQL connection. A read that differs by
engine (``queued_since`` on PostgreSQL, the cluster and window reads) is the engine's
own method. The area modules are chosen per engine, so their functions are typed
``Any`` here: the protocol's annotations are the contract, and the contract suite
(tests/store/contract) checks both engines against it.
"""

# mypy: disable-error-code="no-any-return"

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ClassVar, NamedTuple

from shepherd.store.models import (
    Agent,
    Approval,
    Delivery,
    Dispatch,
    JobRow,
    Message,
    Pause,
    Run,
    TaskGroup,
)
from shepherd.store.protocol import OrphanedProcess

__all__ = ["EngineReads", "ReadModules"]


class ReadModules(NamedTuple):
    """An engine's area modules, by area."""

    queries: ModuleType
    controls: ModuleType
    runs: ModuleType
    agents: ModuleType
    messages: ModuleType
    deliveries: ModuleType
    spawn: ModuleType
    groups: ModuleType
    approvals: ModuleType
    metrics: ModuleType


class EngineReads(ABC):
    """The plain reads of ``store.protocol.Store`` over ``read`` and ``sql``."""

    sql: ClassVar[ReadModules]

    @abstractmethod
    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(connection, *args, **kwargs)`` on a reader connection of the engine."""

    async def job(self, ref: str | int) -> JobRow | None:
        return await self.read(self.sql.queries.get_job, ref)

    async def jobs(self) -> list[JobRow]:
        return await self.read(self.sql.queries.list_jobs)

    async def jobs_by_id(self, ids: Sequence[int]) -> dict[int, JobRow]:
        return await self.read(self.sql.queries.jobs_by_id, list(ids))

    async def schedule_states(self, job_ids: Sequence[int]) -> dict[int, str]:
        return await self.read(self.sql.queries.schedule_states, list(job_ids))

    async def dispatch(self, dispatch_id: int) -> Dispatch | None:
        return await self.read(self.sql.queries.get_dispatch, dispatch_id)

    async def dispatches(
        self,
        *,
        status: str | Sequence[str] | None = None,
        job: str | None = None,
        limit: int = 100,
        **page: Any,
    ) -> list[Dispatch]:
        return await self.read(
            self.sql.queries.list_dispatches, status=status, job=job, limit=limit, **page
        )

    async def queued_since(
        self, after_seq: int, *, exclude_origin: str | None = None
    ) -> list[Dispatch]:
        return await self.read(
            self.sql.queries.queued_since, after_seq, exclude_origin=exclude_origin
        )

    async def cancel_requests(self) -> list[tuple[int, str]]:
        return await self.read(self.sql.queries.cancel_requests)

    async def dispatch_by_key(self, job_id: int, key: str | None) -> int:
        return await self.read(self.sql.queries.dispatch_by_key, job_id, key)

    async def run(self, run_id: int) -> Run | None:
        return await self.read(self.sql.queries.get_run, run_id)

    async def pauses(self) -> list[Pause]:
        return await self.read(self.sql.controls.pauses)

    async def runs(
        self,
        *,
        job: str | None = None,
        status: str | Sequence[str] | None = None,
        dispatch_id: int | None = None,
        limit: int = 100,
        **page: Any,
    ) -> list[Run]:
        return await self.read(
            self.sql.queries.list_runs,
            job=job,
            status=status,
            dispatch_id=dispatch_id,
            limit=limit,
            **page,
        )

    async def orphaned_processes(self) -> list[OrphanedProcess]:
        return await self.read(self.sql.runs.orphaned_processes)

    async def agents(self, *, since_rev: int | None = None) -> list[Agent]:
        if since_rev is None:
            return await self.read(self.sql.agents.list_agents)
        return await self.read(self.sql.agents.agents_since, since_rev)

    async def agent(self, agent_id: str) -> Agent | None:
        return await self.read(self.sql.agents.get_agent, agent_id)

    async def inbox(
        self,
        agent: str,
        *,
        statuses: tuple[str, ...] = ("pending",),
        limit: int = 100,
        now: float | None = None,
    ) -> list[Message]:
        return await self.read(
            self.sql.messages.inbox, agent, statuses=statuses, limit=limit, now=now
        )

    async def messages(
        self,
        *,
        to_agent: str | None = None,
        from_agent: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Message]:
        return await self.read(
            self.sql.messages.list_messages,
            to_agent=to_agent,
            from_agent=from_agent,
            status=status,
            limit=limit,
        )

    async def delivery(self, delivery_id: int) -> Delivery | None:
        return await self.read(self.sql.deliveries.get_delivery, delivery_id)

    async def deliveries(
        self,
        *,
        status: str | None = None,
        job: str | None = None,
        run_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        return await self.read(
            self.sql.deliveries.list_deliveries, status=status, job=job, run_id=run_id, limit=limit
        )

    async def pending_deliveries(self, *, limit: int = 10_000) -> list[Delivery]:
        return await self.read(self.sql.deliveries.pending_deliveries, limit=limit)

    async def message(self, message_id: int) -> Message | None:
        return await self.read(self.sql.messages.get_message, message_id)

    async def thread(self, message_id: int) -> list[Message]:
        return await self.read(self.sql.messages.thread, message_id)

    async def pending_spawns(self) -> list[tuple[int, str, str]]:
        return await self.read(self.sql.spawn.pending_spawns)

    async def failed_spawns(self, *, limit: int = 5) -> tuple[int, list[dict[str, Any]]]:
        return await self.read(self.sql.spawn.failed_spawns, limit=limit)

    async def task_group(self, ref: str | int) -> TaskGroup | None:
        return await self.read(self.sql.groups.get_group, ref)

    async def group_deadlines(self, ids: Sequence[int] | None = None) -> dict[int, float]:
        return await self.read(self.sql.groups.group_deadlines, None if ids is None else list(ids))

    async def task_groups(
        self, *, status: str | None = None, ids: Sequence[int] | None = None, limit: int = 100
    ) -> list[TaskGroup]:
        if ids is not None:
            return await self.read(self.sql.groups.groups_by_id, list(ids))
        if status == "open":
            return await self.read(self.sql.groups.open_groups)
        return await self.read(self.sql.groups.list_groups, status=status, limit=limit)

    async def approval(self, approval_id: int) -> Approval | None:
        return await self.read(self.sql.approvals.get_approval, approval_id)

    async def approvals(
        self, *, status: str | None = None, job: str | None = None, limit: int = 100
    ) -> list[Approval]:
        return await self.read(
            self.sql.approvals.list_approvals, status=status, job=job, limit=limit
        )

    async def next_approval_deadline(self) -> float | None:
        return await self.read(self.sql.approvals.next_deadline)

    async def stats(self) -> dict[str, Any]:
        return await self.read(self.sql.queries.stats)

    async def queue_depth(self) -> list[tuple[str, int, str, int]]:
        return await self.read(self.sql.metrics.queue_depth)

    async def latest_instance(self) -> dict[str, Any] | None:
        return await self.read(self.sql.queries.latest_instance)
