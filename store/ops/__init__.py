"""Write operations: one typed msgspec Struct per state transition, engine-neutral.

The store applies a batch of them in one transaction (``Store.apply``: the group
commit the store-writer actor feeds); one failing op does not undo the others. The
SQL that performs each op belongs to the engine (``store.sqlite``); nothing here
knows a database.

- ``store.ops.dispatches``: new dispatches, claims, outcomes (with fencing), settling,
  cancel, dead-letter retry / purge;
- ``store.ops.runs``: crash recovery, process groups, heartbeats, the status snapshot;
- ``store.ops.jobs``: jobs and the scheduler's ``RecordSlots``;
- ``store.ops.retention``: the pruner's bounded deletes;
- ``store.ops.messages``: inbox messages and announce deliveries.

Every op is importable from here.
"""

from __future__ import annotations

from shepherd.store.ops.dispatches import (
    CancelDispatch,
    ClaimRun,
    ClaimRuns,
    FinishRun,
    FinishRuns,
    InsertDispatches,
    NewDispatch,
    PurgeDead,
    RetryDead,
    Settle,
    SettleQueued,
)
from shepherd.store.ops.jobs import (
    DeleteJob,
    RecordSlots,
    SaveJob,
    SetJobState,
    SkippedSlot,
    SlotFailed,
    SlotItem,
)
from shepherd.store.ops.messages import (
    MESSAGE_OP_TYPES,
    Attempt,
    DeadLetterAlert,
    ExpireMessages,
    InsertDeliveries,
    InsertMessages,
    MarkMessages,
    MessageOp,
    NewDelivery,
    NewMessage,
    RecordAttempts,
    RequeueDeliveries,
)
from shepherd.store.ops.retention import (
    PRUNE_OP_TYPES,
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneKeys,
    PruneMessages,
    PruneOp,
    PruneRunsBefore,
    PruneRunsPerJob,
)
from shepherd.store.ops.runs import (
    Heartbeats,
    RecordProcess,
    RecoverOrphans,
    SaveStatus,
)

# @@ops-imports@@ (add "from shepherd.store.ops.<module> import ..." above this line)

__all__ = [
    "MESSAGE_OP_TYPES",
    "PRUNE_OP_TYPES",
    "Attempt",
    "CancelDispatch",
    "ClaimRun",
    "ClaimRuns",
    "DeadLetterAlert",
    "DeleteJob",
    "ExpireMessages",
    "FinishRun",
    "FinishRuns",
    "Heartbeats",
    "InsertDeliveries",
    "InsertDispatches",
    "InsertMessages",
    "MarkMessages",
    "MessageOp",
    "NewDelivery",
    "NewDispatch",
    "NewMessage",
    "PruneDeliveries",
    "PruneDispatches",
    "PruneKeys",
    "PruneMessages",
    "PruneOp",
    "PruneRunsBefore",
    "PruneRunsPerJob",
    "Pruned",
    "PurgeDead",
    "RecordAttempts",
    "RecordProcess",
    "RecordSlots",
    "RecoverOrphans",
    "RequeueDeliveries",
    "RetryDead",
    "SaveJob",
    "SaveStatus",
    "SetJobState",
    "Settle",
    "SettleQueued",
    "SkippedSlot",
    "SlotFailed",
    "SlotItem",
    "WriteOp",
]

WriteOp = (
    InsertDispatches
    | ClaimRuns
    | FinishRuns
    | SettleQueued
    | RecoverOrphans
    | RecordProcess
    | CancelDispatch
    | RetryDead
    | PurgeDead
    | SaveJob
    | DeleteJob
    | SetJobState
    | RecordSlots
    | Heartbeats
    | PruneOp
    | SaveStatus
    | MessageOp
    # @@ops-union@@ (add "| YourOp" above this line; one union per ops module)
)
