"""The store protocol: what actors and the runtime may ask of a storage engine.

Modelled on Oban's ``Engine``: a narrow set of typed operations, engine-neutral.
Callers never see a driver, a connection or SQL text; an engine (today
``store.sqlite.SqliteStore``) implements every method here. ``store.factory.open_store``
picks the engine from the database string.

- Writes: ``apply(ops)`` runs a batch of write ops (the msgspec Structs of
  ``store.ops``) as ONE transaction — the group commit the store-writer actor feeds —
  and returns one result per op (a ``StoreError`` in place of a failed op's result;
  the other ops commit). ``apply_one`` is the single-op form that raises instead.
- Reads: one method per question the actors and the runtime ask. Every read sees
  committed state only.
- Upkeep: ``checkpoint``, ``backup``, ``close``, ``statistics``.

Errors are ``store.errors`` classes (``DatabaseLocked``, ``DiskFull``, ``ReadOnly``,
``DatabaseCorrupt``, ``StoreError``), never a driver's exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

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
from shepherd.store.ops import WriteOp

__all__ = ["CheckpointMode", "OrphanedProcess", "Store"]

CheckpointMode = Literal["PASSIVE", "TRUNCATE"]
# (run_id, pgid, process start time, clock id) of a running run's process group
OrphanedProcess = tuple[int, int, int, str]


class Store(Protocol):
    """A storage engine. See the module docstring for the contract."""

    # -- writes ---------------------------------------------------------------------

    async def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        """All ``ops`` in one transaction; one result per op (a StoreError for a
        failed op). An error of the transaction itself raises and commits nothing."""
        ...

    async def apply_one(self, op: WriteOp) -> Any:
        """``op`` alone in a transaction; its result, or its StoreError raised."""
        ...

    # -- jobs -------------------------------------------------------------------------

    async def job(self, ref: str | int) -> JobRow | None:
        """The job named ``ref`` (or with id ``ref``: an int or a string of digits)."""
        ...

    async def jobs(self) -> list[JobRow]:
        """Every job, by name."""
        ...

    async def jobs_by_id(self, ids: Sequence[int]) -> dict[int, JobRow]:
        """The jobs among ``ids`` that exist, by id."""
        ...

    async def schedule_states(self, job_ids: Sequence[int]) -> dict[int, str]:
        """Status of the latest scheduled (slot) dispatch of each job that has one."""
        ...

    # -- dispatches -------------------------------------------------------------------

    async def dispatch(self, dispatch_id: int) -> Dispatch | None: ...

    async def dispatches(
        self,
        *,
        status: str | Sequence[str] | None = None,
        job: str | None = None,
        limit: int = 100,
        **page: Any,
    ) -> list[Dispatch]:
        """Newest first. ``page``: the keyset filters ``before`` (ids below it),
        ``priority``, ``agent``, ``since`` / ``until`` (created_at)."""
        ...

    async def queued_since(
        self, after_seq: int, *, exclude_origin: str | None = None
    ) -> list[Dispatch]:
        """Queued dispatches with ``seq > after_seq``, by seq; its cost must not grow
        with the queue (the dispatcher runs it on every wake-up)."""
        ...

    async def cancel_requests(self) -> list[tuple[int, str]]:
        """``(dispatch_id, status)`` of queued or running dispatches asked to cancel."""
        ...

    async def dispatch_by_key(self, job_id: int, key: str | None) -> int:
        """The dispatch of ``job_id`` bound to producer key ``key`` (0: none)."""
        ...

    # -- runs -------------------------------------------------------------------------

    async def run(self, run_id: int) -> Run | None: ...

    async def pauses(self) -> list[Pause]:
        """Every pause in force (``store.ops.controls``), oldest first."""
        ...

    async def runs(
        self,
        *,
        job: str | None = None,
        status: str | Sequence[str] | None = None,
        dispatch_id: int | None = None,
        limit: int = 100,
        **page: Any,
    ) -> list[Run]:
        """Newest first. ``page``: ``before`` (ids below it), ``agent``, ``since`` /
        ``until`` (started_at)."""
        ...

    async def orphaned_processes(self) -> list[OrphanedProcess]:
        """Every running run that recorded a process group (crash recovery)."""
        ...

    # -- agents ------------------------------------------------------------------------

    async def agents(self, *, since_rev: int | None = None) -> list[Agent]:
        """Registered agents by id; with ``since_rev``, the rows written after that rev
        (removed ones included, as tombstones), by rev."""
        ...

    async def agent(self, agent_id: str) -> Agent | None: ...

    # -- messages and deliveries ------------------------------------------------------

    async def inbox(
        self,
        agent: str,
        *,
        statuses: tuple[str, ...] = ("pending",),
        limit: int = 100,
        now: float | None = None,
    ) -> list[Message]:
        """``agent``'s messages and broadcasts in inbox order; unexpired at ``now``."""
        ...

    async def messages(
        self,
        *,
        to_agent: str | None = None,
        from_agent: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Message]: ...

    async def delivery(self, delivery_id: int) -> Delivery | None: ...

    async def deliveries(
        self,
        *,
        status: str | None = None,
        job: str | None = None,
        run_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]: ...

    async def pending_deliveries(self, *, limit: int = 10_000) -> list[Delivery]:
        """Every pending delivery, earliest due first."""
        ...

    async def message(self, message_id: int) -> Message | None: ...

    async def thread(self, message_id: int) -> list[Message]:
        """The conversation ``message_id`` belongs to (root and replies), oldest first."""
        ...

    # -- spawn messages and task groups -------------------------------------------------

    async def pending_spawns(self) -> list[tuple[int, str, str]]:
        """(id, from_agent, body) of the spawn messages still pending."""
        ...

    async def failed_spawns(self, *, limit: int = 5) -> tuple[int, list[dict[str, Any]]]:
        """How many spawn messages failed, and the latest ``limit`` (id, from, error)."""
        ...

    async def task_group(self, ref: str | int) -> TaskGroup | None:
        """By id, or by name (the open group of that name, else the newest)."""
        ...

    async def group_deadlines(self, ids: Sequence[int] | None = None) -> dict[int, float]:
        """The earliest member deadline of each open group (``ids``: only these)."""
        ...

    async def task_groups(
        self, *, status: str | None = None, ids: Sequence[int] | None = None, limit: int = 100
    ) -> list[TaskGroup]:
        """Newest first; ``status="open"`` without a limit gives every open group."""
        ...

    # -- approvals --------------------------------------------------------------------

    async def approval(self, approval_id: int) -> Approval | None: ...

    async def approvals(
        self, *, status: str | None = None, job: str | None = None, limit: int = 100
    ) -> list[Approval]:
        """Newest first."""
        ...

    async def next_approval_deadline(self) -> float | None:
        """The earliest deadline of a pending approval (its cost must not grow with them)."""
        ...

    # -- summaries --------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Counts: dispatches by status, running runs, jobs and enabled jobs."""
        ...

    async def queue_depth(self) -> list[tuple[str, int, str, int]]:
        """``(state, priority rank, job, count)`` of the queued, held (awaiting approval)
        and running dispatches; visits those rows only (an index), never the finished."""
        ...

    async def latest_instance(self) -> dict[str, Any] | None:
        """The most recently updated runtime instance's status row."""
        ...

    # -- upkeep -----------------------------------------------------------------------

    async def checkpoint(self, mode: CheckpointMode = "PASSIVE") -> None:
        """Move committed work from the log into the main file (a no-op where the
        engine has no such step)."""
        ...

    async def backup(
        self, target: str, *, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """A consistent copy of the whole database at ``target``, taken while writes go
        on, written atomically (``target`` is the old file or the whole copy); its size
        in bytes. ``progress(done, total)`` is called as the copy advances (from a
        worker thread)."""
        ...

    async def close(self, *, checkpoint: bool = True) -> None: ...

    def statistics(self) -> dict[str, Any]:
        """The engine's own counters (commits, ops applied, ...)."""
        ...

    # @@protocol-methods@@ (new protocol methods go above this line)
