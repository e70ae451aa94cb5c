"""The writer's side of the engine: a batch of write ops in one transaction, each op's
SQL chosen by its type, and the thread hop that runs a function on a connection's own
thread (counted in ``store.activity.THREAD_WORK`` so a fake clock sees the work)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from shepherd.store.activity import THREAD_WORK

if TYPE_CHECKING:  # a tool applying ops on a plain connection loads no aiosqlite
    import aiosqlite
from shepherd.store.ops import (
    AGENT_OP_TYPES,
    APPROVAL_OP_TYPES,
    MESSAGE_OP_TYPES,
    PRUNE_OP_TYPES,
    CancelDispatch,
    ClaimRuns,
    CreateGroup,
    DeleteJob,
    ExpireMessages,
    FinishRuns,
    Heartbeats,
    InsertDeliveries,
    InsertDispatches,
    InsertMessages,
    MarkDead,
    MarkMessages,
    PurgeDead,
    RecordAttempts,
    RecordProcess,
    RecordSlots,
    RecoverOrphans,
    ReportMember,
    RequeueDeliveries,
    RetryDead,
    SaveJob,
    SaveStatus,
    SetJobState,
    SettleQueued,
    SpawnMessage,
    WriteOp,
)
from shepherd.store.ops.chains import CancelChain
from shepherd.store.ops.controls import ClearPauses, SetPause
from shepherd.store.ops.imports import ImportBatch
from shepherd.store.sqlite import (
    agents,
    approvals,
    chains,
    claims,
    controls,
    deliveries,
    dispatches,
    groups,
    imports,
    jobs,
    messages,
    prune,
    runs,
    spawn,
)
from shepherd.store.sqlite.codes import fails_batch, op_error

__all__ = ["apply_batch", "apply_op", "on_thread"]

T = TypeVar("T")

# each op's SQL, by the op's type
_APPLY: dict[type, Callable[[sqlite3.Connection, Any], Any]] = {
    Heartbeats: runs.heartbeats,
    SaveStatus: runs.save_status,
    InsertDispatches: dispatches.insert_dispatches,
    ClaimRuns: claims.claim_runs,
    FinishRuns: claims.finish_runs,
    CancelDispatch: runs.cancel_dispatch,
    SettleQueued: runs.settle_queued,
    RecoverOrphans: runs.recover_orphans,
    RecordProcess: runs.record_process,
    RetryDead: runs.retry_dead,
    PurgeDead: runs.purge_dead,
    SaveJob: jobs.save_job,
    DeleteJob: jobs.delete_job,
    SetJobState: jobs.set_job_state,
    RecordSlots: jobs.record_slots,
    InsertMessages: messages.insert_messages,
    MarkMessages: messages.mark_messages,
    ExpireMessages: messages.expire_messages,
    InsertDeliveries: deliveries.insert_deliveries,
    RecordAttempts: deliveries.record_attempts,
    RequeueDeliveries: deliveries.requeue_deliveries,
    **{t: prune.apply_prune_op for t in PRUNE_OP_TYPES},
    SetPause: controls.set_pause,
    ClearPauses: controls.clear_pauses,
    **{t: approvals.apply_approval_op for t in APPROVAL_OP_TYPES},
    **{t: agents.apply_agent_op for t in AGENT_OP_TYPES},
    CreateGroup: groups.create_group,
    ReportMember: groups.report_member,
    MarkDead: groups.mark_dead,
    SpawnMessage: spawn.spawn_message,
    CancelChain: chains.cancel_chain,
    ImportBatch: imports.import_batch,
    # @@apply-entries@@ (add "YourOp: module.fn," above this line)
}
assert set(MESSAGE_OP_TYPES) <= set(_APPLY)


def apply_op(conn: sqlite3.Connection, op: WriteOp) -> Any:
    """Run ``op``'s SQL on ``conn`` (inside the caller's transaction)."""
    fn = _APPLY.get(type(op))
    if fn is None:
        raise TypeError(f"unknown write op {type(op).__name__}")
    return fn(conn, op)


def apply_batch(conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[Any]:
    """Runs on the writer thread: all ops in one transaction, one SAVEPOINT each.

    An op that raises (a constraint, a value SQLite cannot bind such as an int past 64
    bits, a bug in the op) is rolled back to its savepoint and its result is a
    ``StoreError``; the other ops commit. Only an error of the transaction itself
    (``_WHOLE_BATCH``) fails the batch. A batch of one needs no savepoint: a failed op
    rolls the transaction back and nothing is committed.
    """
    results: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        single = len(ops) == 1
        for op in ops:
            if not single:
                conn.execute("SAVEPOINT op")
            try:
                results.append(apply_op(conn, op))
            # Broad on purpose: the writer serves every actor, and one op's failure is
            # its caller's alone (cancellation cannot arrive on this thread).
            except Exception as exc:
                if fails_batch(conn, exc):
                    raise
                conn.execute("ROLLBACK" if single else "ROLLBACK TO op")
                results.append(op_error(exc))
                if single:
                    return results
            if not single:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


async def on_thread(
    conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run ``fn(sqlite3_connection, *args)`` on the connection's own thread: one hop for
    a whole batch of statements. aiosqlite's public API is one hop per statement; its
    ``_execute`` (stable for years) is the documented-by-source way to run a function.

    ``THREAD_WORK`` counts the hop while it runs (a fake clock waits for it); a hop whose
    task is cancelled stays counted until a marker queued behind it has run."""
    THREAD_WORK.begin()
    try:
        result: T = await conn._execute(fn, conn._conn, *args, **kwargs)  # type: ignore[no-untyped-call]
    except Exception:
        THREAD_WORK.end()
        raise
    except BaseException:
        marker = THREAD_WORK.abandon(getattr(conn, "_thread", None))
        try:
            conn._tx.put_nowait((None, marker))
        except Exception:  # aiosqlite internals changed: count it done
            marker()
        raise
    THREAD_WORK.end()
    return result
