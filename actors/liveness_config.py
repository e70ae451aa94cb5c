"""``[agents]``, the agents registry's configuration (``actors.liveness``), apart from the
health monitor's code so that loading the configuration (every CLI command) imports
neither the store's write ops nor logging."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shepherd.store.bounds import DAY, Range
from shepherd.store.models import AgentSpec, Seconds

__all__ = ["AgentsConfig"]


class AgentsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[agents]``: agents registered at start (``[[agents.agent]]``), the owner
    filter (owner → agent ids), liveness thresholds."""

    agent: list[AgentSpec] = msgspec.field(default_factory=list)
    owner_filter: dict[str, list[str]] = msgspec.field(default_factory=dict)
    offline_after: Annotated[Seconds, Range(1, DAY, "s")] = Seconds(90.0)
    degraded_after: Annotated[int, Range(1, 10_000)] = 5
    gateway_agent: bool = True  # register the gateway's ``main`` agent (capability *)
