"""shepherd's public API: the embeddable ``Runtime``, job specs, config and errors.

The names are loaded on first use (PEP 562 ``__getattr__``): ``import shepherd.runtime``
costs nothing, so a CLI command or a producer process imports only the modules it uses
(``shepherd enqueue`` never loads the actor tree). ``from shepherd.runtime import
Runtime`` and ``__all__`` work as with eager imports; type checkers see the imports
below ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shepherd.actors.executors.base import ExecResult, Executor, RunContext
    from shepherd.actors.executors.gateway import GatewayConfig
    from shepherd.actors.messages import OutcomeEvent, RunStarted, SlotRecord
    from shepherd.actors.router.delivery import DeliveryConfig, DeliveryTarget
    from shepherd.runtime.app import Runtime
    from shepherd.runtime.config import Config, load_config
    from shepherd.runtime.producer import Producer
    from shepherd.runtime.targets import Targets
    from shepherd.runtime.transactional import enqueue_in
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

# name -> the module that defines it
_WHERE = {
    **dict.fromkeys(("ExecResult", "Executor", "RunContext"), "shepherd.actors.executors.base"),
    "GatewayConfig": "shepherd.actors.executors.gateway",
    **dict.fromkeys(("OutcomeEvent", "RunStarted", "SlotRecord"), "shepherd.actors.messages"),
    **dict.fromkeys(("DeliveryConfig", "DeliveryTarget"), "shepherd.actors.router.delivery"),
    "Runtime": "shepherd.runtime.app",
    **dict.fromkeys(("Config", "load_config"), "shepherd.runtime.config"),
    "Producer": "shepherd.runtime.producer",
    "Targets": "shepherd.runtime.targets",
    "enqueue_in": "shepherd.runtime.transactional",
    **dict.fromkeys(
        (
            "ConfigError",
            "Conflict",
            "DatabaseCorrupt",
            "DatabaseLocked",
            "Deferred",
            "Discard",
            "DiskFull",
            "NotFound",
            "ReadOnly",
            "RetryAfter",
            "ShepherdError",
            "StoreError",
            "SupervisorEscalation",
        ),
        "shepherd.store.errors",
    ),
    **dict.fromkeys(
        (
            "Approval",
            "ApprovalPolicy",
            "Delivery",
            "Dispatch",
            "EnqueueRequest",
            "GroupMember",
            "JobSpec",
            "Message",
            "Pause",
            "RetryPolicy",
            "Run",
            "TaskGroup",
        ),
        "shepherd.store.models",
    ),
    "Reported": "shepherd.store.ops",
}

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
    "Producer",
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
    "enqueue_in",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
