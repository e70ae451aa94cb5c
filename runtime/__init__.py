"""shepherd's public API: the embeddable ``Runtime``, job specs, config and errors."""

from shepherd.actors.executors.base import ExecResult, Executor, RunContext
from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.actors.messages import OutcomeEvent, RunStarted, SlotRecord
from shepherd.actors.router.delivery import DeliveryConfig, DeliveryTarget
from shepherd.runtime.app import Runtime
from shepherd.runtime.config import Config, load_config
from shepherd.runtime.targets import Targets
from shepherd.store.errors import (
    ConfigError,
    Conflict,
    DatabaseCorrupt,
    DatabaseLocked,
    Deferred,
    Discard,
    DiskFull,
    NotFound,
    ReadOnly,
    RetryAfter,
    ShepherdError,
    StoreError,
    SupervisorEscalation,
)
from shepherd.store.models import (
    Approval,
    ApprovalPolicy,
    Delivery,
    Dispatch,
    EnqueueRequest,
    GroupMember,
    JobSpec,
    Message,
    Pause,
    RetryPolicy,
    Run,
    TaskGroup,
)
from shepherd.store.ops import Reported

__all__ = [
    "Approval",
    "ApprovalPolicy",
    "Config",
    "ConfigError",
    "Conflict",
    "DatabaseCorrupt",
    "DatabaseLocked",
    "Deferred",
    "Delivery",
    "DeliveryConfig",
    "DeliveryTarget",
    "Discard",
    "DiskFull",
    "Dispatch",
    "EnqueueRequest",
    "ExecResult",
    "Executor",
    "GatewayConfig",
    "GroupMember",
    "JobSpec",
    "Message",
    "NotFound",
    "OutcomeEvent",
    "Pause",
    "ReadOnly",
    "Reported",
    "RetryAfter",
    "RetryPolicy",
    "Run",
    "RunContext",
    "RunStarted",
    "Runtime",
    "ShepherdError",
    "SlotRecord",
    "StoreError",
    "SupervisorEscalation",
    "Targets",
    "TaskGroup",
    "load_config",
]
