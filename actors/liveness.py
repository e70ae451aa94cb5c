"""Agent liveness: the health monitor's look at the agents registry on each tick.

``Liveness.check`` (called from ``HealthMonitor.tick``, so on the monitor's timer):

1. the gateway's agents (``source = gateway``, OCS's ``main``) heartbeat through the
   gateway probe: a healthy probe of the ``agent`` executor is their heartbeat;
2. an agent that has been seen (``last_seen`` set: it heartbeats) and has been silent
   for ``offline_after`` is marked ``offline``: the dispatcher then gives it nothing
   new and cancels its running runs, whose job's delivery guarantee applies
   (at-least-once: queued again, and assigned elsewhere);
3. when a status changed, the dispatcher is poked (``Poke(agents=True)``) to read the
   agents again.

An agent that never heartbeats (declared in the config, added by hand) is never
judged silent. Degraded (consecutive failed runs) is the dispatcher's mark
(``actors.dispatcher.agents``); a heartbeat brings a degraded or offline agent back
to ``ready``. ``AgentsConfig`` is the ``[agents]`` table of the config.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shepherd.actors.liveness_config import AgentsConfig  # re-exported
from shepherd.store.errors import MailboxFull, StoreError
from shepherd.store.ops import AgentState, AgentStates
from shepherd.store.protocol import Store

if TYPE_CHECKING:  # the config (AgentsConfig) loads without the actor primitives
    from shepherd.actors.messages import DispatcherMsg
    from shepherd.actors.primitives.clock import Clock
    from shepherd.actors.primitives.mailbox import Address
    from shepherd.actors.writer import StoreMsg

__all__ = ["AgentsConfig", "Liveness", "heartbeat_state"]

log = logging.getLogger("shepherd.health")


def heartbeat_state(agent_id: str, now: float, status: str | None = None) -> AgentState:
    """A heartbeat: seen now; an offline or degraded agent is ready again (or
    ``status``, ready / sleeping / busy, as the agent says)."""
    if status is not None:
        return AgentState(id=agent_id, seen=now, status=status, when=_REVIVABLE + _AWAKE)
    return AgentState(id=agent_id, seen=now, status="ready", when=_REVIVABLE)


_REVIVABLE = ("offline", "degraded")
_AWAKE = ("ready", "sleeping", "busy")


class Liveness:
    def __init__(
        self,
        cfg: AgentsConfig,
        *,
        store: Store,
        writer: Address[StoreMsg],
        dispatcher: Address[DispatcherMsg],
        clock: Clock,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._writer = writer
        self._dispatcher = dispatcher
        self._clock = clock
        self.marked_offline = 0

    async def check(self, probes: Mapping[str, bool]) -> None:
        from shepherd.actors.messages import Poke  # not at import: see TYPE_CHECKING
        from shepherd.actors.writer import write

        now = self._clock.wall()
        try:
            agents = await self._store.agents()
        except StoreError as exc:
            log.error("agents not read: %s", exc)
            return
        items: list[AgentState] = []
        gateway_up = probes.get("agent") is True
        limit = float(self._cfg.offline_after)
        for a in agents:
            if a.source == "gateway" and gateway_up:
                items.append(heartbeat_state(a.id, now))
            elif a.last_seen is not None and a.status != "offline" and now - a.last_seen > limit:
                log.warning("agent %s silent for %.0fs: offline", a.id, now - a.last_seen)
                self.marked_offline += 1
                items.append(AgentState(id=a.id, status="offline"))
        if not items:
            return
        before = {a.id: a.status for a in agents}
        try:
            after = await write(self._writer, AgentStates(items, now))
        except StoreError as exc:
            log.error("agent states not written: %s", exc)
            return
        if any(before.get(s.id) != st for s, st in zip(items, after, strict=True)):
            try:
                self._dispatcher.tell(Poke(agents=True))
            except MailboxFull:
                log.warning("dispatcher inbox full; agents read on its next Poke")

    def statistics(self) -> dict[str, int]:
        return {"marked_offline": self.marked_offline}
