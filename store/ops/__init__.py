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
- ``store.ops.messages``: inbox messages and announce deliveries;
- ``store.ops.spawn``: a spawn message and its one-shot job, in one transaction;
- ``store.ops.groups``: task groups (the dead-man switch) and their rules.
- ``store.ops.imports``: an import from another scheduler (``import ocs``), in one
  transaction.

Every op is importable from here.
"""

from __future__ import annotations

from shepherd.store.ops.agents import (
    AGENT_OP_TYPES,
    AgentNotes,
    AgentOp,
    AgentState,
    AgentStates,
    RemoveAgent,
    SaveAgent,
    UpdateAgent,
)
from shepherd.store.ops.approvals import (
    APPROVAL_OP_TYPES,
    ApprovalOp,
    ExpireApprovals,
    RepairApprovals,
    ResolveApproval,
    Resolved,
)
from shepherd.store.ops.chains import CancelChain, ChainOp, Finished, FiredChild
from shepherd.store.ops.controls import CONTROL_OP_TYPES, ClearPauses, ControlOp, SetPause
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
from shepherd.store.ops.groups import (
    GROUP_OP_TYPES,
    CreateGroup,
    GroupOp,
    MarkDead,
    Reported,
    ReportMember,
)
from shepherd.store.ops.imports import IMPORT_OP_TYPES, ImportBatch, ImportOp
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
    PruneApprovals,
    Pruned,
    PruneDeliveries,
    PruneDispatches,
    PruneGroups,
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
from shepherd.store.ops.spawn import SPAWN_OP_TYPES, Spawned, SpawnMessage, SpawnOp

# @@ops-imports@@ (add "from shepherd.store.ops.<module> import ..." above this line)

__all__ = [
    "AGENT_OP_TYPES",
    "APPROVAL_OP_TYPES",
    "CONTROL_OP_TYPES",
    "GROUP_OP_TYPES",
    "IMPORT_OP_TYPES",
    "MESSAGE_OP_TYPES",
    "PRUNE_OP_TYPES",
    "SPAWN_OP_TYPES",
    "AgentNotes",
    "AgentOp",
    "AgentState",
    "AgentStates",
    "ApprovalOp",
    "Attempt",
    "CancelChain",
    "CancelDispatch",
    "ChainOp",
    "ClaimRun",
    "ClaimRuns",
    "ClearPauses",
    "ControlOp",
    "CreateGroup",
    "DeadLetterAlert",
    "DeleteJob",
    "ExpireApprovals",
    "ExpireMessages",
    "FinishRun",
    "FinishRuns",
    "Finished",
    "FiredChild",
    "GroupOp",
    "Heartbeats",
    "ImportBatch",
    "ImportOp",
    "InsertDeliveries",
    "InsertDispatches",
    "InsertMessages",
    "MarkDead",
    "MarkMessages",
    "MessageOp",
    "NewDelivery",
    "NewDispatch",
    "NewMessage",
    "PruneApprovals",
    "PruneDeliveries",
    "PruneDispatches",
    "PruneGroups",
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
    "RemoveAgent",
    "RepairApprovals",
    "ReportMember",
    "Reported",
    "RequeueDeliveries",
    "ResolveApproval",
    "Resolved",
    "RetryDead",
    "SaveAgent",
    "SaveJob",
    "SaveStatus",
    "SetJobState",
    "SetPause",
    "Settle",
    "SettleQueued",
    "SkippedSlot",
    "SlotFailed",
    "SlotItem",
    "SpawnMessage",
    "SpawnOp",
    "Spawned",
    "UpdateAgent",
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
    | ControlOp
    | ApprovalOp
    | AgentOp
    | GroupOp
    | SpawnOp
    | ChainOp
    | ImportOp
    # @@ops-union@@ (add "| YourOp" above this line; one union per ops module)
)
