"""Which function of this package applies each write op (``batch.APPLY``), by the op's
type, mirroring ``store.sqlite.batch``: importing this module fills the table."""

from __future__ import annotations

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
)
from shepherd.store.ops.chains import CancelChain
from shepherd.store.ops.controls import ClearPauses, SetPause
from shepherd.store.ops.imports import ImportBatch
from shepherd.store.postgres import (
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
from shepherd.store.postgres.batch import APPLY

__all__ = ["READY"]

APPLY.update(
    {
        Heartbeats: runs.heartbeats,
        SaveStatus: runs.save_status,
        InsertDispatches: dispatches.insert_dispatches,
        ClaimRuns: claims.claim_runs,  # fenced by the node's epoch (claims_fast, cluster)
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
)
assert set(MESSAGE_OP_TYPES) <= set(APPLY)
READY = True
