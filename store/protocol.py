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

The module is long because it is the whole contract: every operation with its promise.

Errors are ``store.errors`` classes (``DatabaseLocked``, ``DiskFull``, ``ReadOnly``,
``DatabaseCorrupt``, ``StoreError``), never a driver's exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, Protocol

from shepherd.store.cluster import EndGroups, NodeInfo, NodeLease, Rescue
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
from shepherd.store.ops import DeadLetterAlert, WriteOp

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

    def apply_now(self, ops: Sequence[WriteOp]) -> list[Any] | None:
        """``apply`` without waiting, on the caller's thread, where the engine can (a
        small group on SQLite's loop-thread path, the write lock free); None when it
        cannot, and then nothing was written."""
        ...

    def check_files(self) -> None:
        """Raise ``DatabaseReplaced`` when the store's file was removed or replaced
        under it (SQLite); a server's database has no file here (PostgreSQL: nothing)."""
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
        with the queue (the dispatcher runs it on every wake-up). Where several writers
        commit seqs out of order (PostgreSQL), it also returns the queued rows of lower
        seqs that committed after the previous call (``store.postgres.listen``): a
        caller must skip the dispatches it already holds."""
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

    async def checkpoint(self, mode: CheckpointMode = "PASSIVE") -> int:
        """Move committed work from the log into the main file; how many frames the log
        gained since the last call (0: nothing new, or the engine has no such step)."""
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

    # -- cluster: the scheduler's leadership ---------------------------------------------

    async def lead_scheduler(self, node: str) -> bool:
        """Whether ``node`` leads the scheduler now: it takes the leadership when no one
        holds it and keeps it while it does; only the leader fires slots. SQLite: always
        True (one runtime per file). PostgreSQL: an advisory lock held on a connection of
        its own (``store.postgres.leader``), lost with that connection."""
        ...

    async def scheduler_leader(self) -> str | None:
        """The node that leads the scheduler (None: no one; SQLite: None, there is only
        the runtime that serves the file)."""
        ...

    # -- wake-ups ----------------------------------------------------------------------

    def wakeups(self) -> AsyncIterator[str]:
        """What other writers committed, as it commits: strings of the ingest socket's
        flags (``actors.ingest.merge_wakes``: ``d`` dispatches queued, ``c`` a cancel
        asked), several merged into one while the consumer is busy; forever. SQLite:
        never yields (the ingest socket carries the wake-ups). PostgreSQL: LISTEN/NOTIFY
        (``store.postgres.listen``): a commit from any node, or a plain SQL insert into
        ``dispatches``, yields within milliseconds; after its connection dropped and came
        back, ``dc`` at once (a catch-up)."""
        ...

    # -- cluster: node leases, rescue, fencing (store.cluster) ---------------------------

    async def join_node(self, node: str, *, lease: float, host: str, pid: int) -> NodeLease:
        """``node`` joins with a heartbeat lease of ``lease`` seconds and a new epoch
        (the claims and outcomes it writes carry it). SQLite: a cluster of one, epoch 0.
        PostgreSQL: a ``nodes`` row, on a connection of its own (never behind a group
        commit); a row of the same name is taken over (its old epoch is fenced)."""
        ...

    async def renew_node(self, node: str, epoch: int, *, lease: float) -> NodeLease:
        """The lease stamped again, with this node's rank among the live nodes;
        ``fenced`` when its epoch was bumped (it was rescued): it must join again."""
        ...

    async def leave_node(self, node: str, epoch: int) -> None:
        """A graceful stop: the node leaves without a rescue."""
        ...

    async def rescue_nodes(
        self,
        *,
        rescuer: str,
        origin: str,
        alert: DeadLetterAlert | None = None,
        host: str = "",
        end_groups: EndGroups | None = None,
    ) -> list[Rescue]:
        """Every other node whose lease ran out: marked dead, its epoch bumped, its
        running runs given their delivery guarantee (as ``RecoverOrphans``), its server
        connections ended; one transaction, two rescuers never both act. Before the
        guarantee applies, ``end_groups`` is given the process groups those runs
        recorded that were started on ``host`` (the rescuer's: a node's host, or for a
        run of no known node its clock id, tells) and its answer goes on the runs.
        SQLite: []."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Every node, by join order (lease age, epoch, status, who leads)."""
        ...

    async def node_processes(self, node: str, *, host: str) -> list[OrphanedProcess]:
        """As ``orphaned_processes``, only the runs ``RecoverOrphans(nodes=[node])``
        takes (``node``'s and those of no live node) that were started on ``host``: a
        run of a node on another host is left out (SQLite: every run, one host)."""
        ...

    async def queued_ready(
        self,
        after: tuple[int, float, int] | None,
        *,
        now: float,
        limit: int,
        lane: tuple[int, int] | None = None,
    ) -> list[Dispatch]:
        """Up to ``limit`` due queued dispatches (``not_before <= now``) past the keyset
        cursor ``after`` = (priority rank, not_before, seq) (None: from the head), in
        that order: the dispatcher's window refill (``store.shared.window``); its cost
        follows ``limit``, not the backlog. ``lane`` = (index, count): of the normal,
        low and background rows only those with ``seq % count = index``."""
        ...

    async def queued_later(self, after: tuple[float, int], *, limit: int) -> list[Dispatch]:
        """Up to ``limit`` queued dispatches past ``after`` = (not_before, seq), in that
        order, any rank (``(now, LAST_SEQ)``: those not yet due): the delayed window."""
        ...

    async def newest_seq(self) -> int:
        """The highest seq any dispatch took (0: none); ``queued_since`` reads past it."""
        ...

    # @@protocol-methods@@ (new protocol methods go above this line)
