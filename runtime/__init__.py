"""shepherd's public API: the embeddable ``Runtime``, job specs, config and errors."""

from actors.delivery import DeliveryConfig, DeliveryTarget
from actors.executors.base import ExecResult, Executor, RunContext
from actors.executors.gateway import GatewayConfig
from actors.messages import OutcomeEvent, RunStarted, SlotRecord
from runtime.app import Runtime
from runtime.config import Config, load_config
from store.errors import (
    ConfigError,
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
from store.messages import Delivery, Message
from store.models import Dispatch, EnqueueRequest, JobSpec, RetryPolicy, Run

__all__ = [
    "Config",
    "ConfigError",
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
    "JobSpec",
    "Message",
    "NotFound",
    "OutcomeEvent",
    "ReadOnly",
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
    "load_config",
]
