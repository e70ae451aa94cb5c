"""The agents side of ``Runtime`` (README "Agents"): the registry, drain, heartbeats.

``AgentsApi`` answers ``rt.agents()``, ``rt.agent(id)``, ``rt.add_agent(...)``,
``rt.update_agent(id, ...)``, ``rt.drain_agent`` / ``rt.undrain_agent``,
``rt.remove_agent`` and ``rt.agent_heartbeat``; each write is committed through the
store writer, then the dispatcher is poked to read the agents again
(``Poke(agents=True)``: it reads only the rows written since the newest it saw). The
CLI (``runtime/_cli_agents.py``) builds the same ops with the same checks
(``agent_spec``, ``update_op``) on a store of its own and wakes the daemon with flag
``A``. Bad input is a ``ConfigError`` naming the field, and nothing is stored; an
unknown agent is ``NotFound``.
"""

from __future__ import annotations

from typing import Any

from shepherd.actors.liveness import heartbeat_state
from shepherd.actors.messages import DispatcherMsg, Poke
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.writer import StoreMsg, write
from shepherd.runtime.config import Config
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import Agent, AgentSpec, check_agent_id, decode_spec
from shepherd.store.ops import AgentState, AgentStates, RemoveAgent, SaveAgent, UpdateAgent
from shepherd.store.protocol import Store

__all__ = [
    "SETTABLE_STATUSES",
    "UPDATABLE",
    "AgentsApi",
    "agent_spec",
    "config_agents",
    "heartbeat_op",
    "status_op",
    "update_op",
]

UPDATABLE = (
    "name",
    "capabilities",
    "policy",
    "max_concurrent",
    "delivery",
    "model",
    "wake",
    "wake_timeout",
)
# what ``update --status`` may set (draining has drain / undrain)
SETTABLE_STATUSES = ("ready", "sleeping", "busy", "degraded", "offline")
_SPEC_FIELDS = frozenset(AgentSpec.__struct_fields__)


def agent_spec(agent_id: Any, **fields: Any) -> AgentSpec:
    """A checked ``AgentSpec``: a ConfigError names the bad field (``capabilities[1]``,
    ``max_concurrent``); ``None`` values take the defaults."""
    check_agent_id(agent_id)
    unknown = sorted(set(fields) - _SPEC_FIELDS)
    if unknown:
        raise ConfigError("not an agent field", field=unknown[0])
    data = {"id": agent_id, **{k: v for k, v in fields.items() if v is not None}}
    return decode_spec(data, AgentSpec, what="agent")


def update_op(row: Agent, changes: dict[str, Any], now: float) -> UpdateAgent:
    """The ``UpdateAgent`` of ``changes`` to ``row``'s definition, checked as a whole
    (the merged agent must be valid); a ConfigError names the field."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise ConfigError(f"cannot be changed; one of {', '.join(UPDATABLE)}", field=unknown[0])
    current = {f: getattr(row, f) for f in UPDATABLE}
    merged = agent_spec(row.id, **{**current, **changes})
    return UpdateAgent(id=row.id, changes={f: getattr(merged, f) for f in changes}, now=now)


def status_op(agent_id: str, status: str, now: float) -> AgentStates:
    if status not in SETTABLE_STATUSES:
        raise ConfigError(
            f"{status!r} is not a status; one of {', '.join(SETTABLE_STATUSES)}", field="status"
        )
    return AgentStates([AgentState(id=agent_id, status=status)], now)


def heartbeat_op(agent_id: str, now: float, status: str | None = None) -> AgentStates:
    if status is not None and status not in ("ready", "sleeping", "busy"):
        raise ConfigError(f"{status!r}: a heartbeat says ready, sleeping or busy", field="status")
    return AgentStates([heartbeat_state(agent_id, now, status)], now)


def config_agents(cfg: Config) -> list[tuple[AgentSpec, str]]:
    """The agents registered at start: ``[[agents.agent]]``, and OCS's ``main`` (every
    capability, ``*``) when a gateway is configured (unless ``[agents] gateway_agent =
    false`` or the config declares ``main`` itself)."""
    out = [(spec, "config") for spec in cfg.agents.agent]
    ids = {spec.id for spec, _ in out}
    if cfg.gateway is not None and cfg.agents.gateway_agent and "main" not in ids:
        out.append((AgentSpec(id="main", name="Main Agent", capabilities=["*"]), "gateway"))
    return out


class AgentsApi:
    def __init__(
        self,
        *,
        store: Store,
        writer: Address[StoreMsg],
        dispatcher: Address[DispatcherMsg],
        clock: Clock,
    ) -> None:
        self.store = store
        self._writer = writer
        self._dispatcher = dispatcher
        self.clock = clock

    async def agents(self) -> list[Agent]:
        """Every registered agent, by id (``running``: its runs in flight)."""
        return await self.store.agents()

    async def agent(self, agent_id: str) -> Agent:
        row = await self.store.agent(agent_id)
        if row is None:
            raise NotFound(f"no agent {agent_id!r}")
        return row

    async def add_agent(
        self,
        agent_id: str,
        *,
        name: str | None = None,
        capabilities: list[str] | None = None,
        policy: str | None = None,
        max_concurrent: int | None = None,
        status: str | None = None,
        delivery: str | None = None,
        model: str | None = None,
        wake: str | None = None,
        wake_timeout: float | None = None,
    ) -> Agent:
        """Register an agent; a taken id is a ConfigError naming ``id``."""
        spec = agent_spec(
            agent_id,
            name=name,
            capabilities=capabilities,
            policy=policy,
            max_concurrent=max_concurrent,
            status=status,
            delivery=delivery,
            model=model,
            wake=wake,
            wake_timeout=wake_timeout,
        )
        got = await self._write(SaveAgent(spec=spec, source="api", mode="add", now=self._now()))
        if got == "exists":
            raise ConfigError(f"an agent {agent_id!r} exists (update it)", field="id")
        return await self.agent(agent_id)

    async def update_agent(self, agent_id: str, /, **changes: Any) -> Agent:
        """Change fields of an agent (``UPDATABLE``; ``status`` too, one of
        ``SETTABLE_STATUSES``: ``offline`` cancels its running runs)."""
        row = await self.agent(agent_id)
        status = changes.pop("status", None)
        op = update_op(row, changes, self._now()) if changes else None
        state = status_op(agent_id, status, self._now()) if status is not None else None
        if op is not None and not await self._write(op):
            raise NotFound(f"no agent {agent_id!r}")
        if state is not None:
            await self._write(state)
        return await self.agent(agent_id)

    async def drain_agent(self, agent_id: str) -> Agent:
        """Nothing new for the agent; its running runs finish."""
        return await self._state(AgentState(id=agent_id, status="draining"))

    async def undrain_agent(self, agent_id: str) -> Agent:
        """A draining agent takes work again (ready)."""
        return await self._state(AgentState(id=agent_id, status="ready", when=("draining",)))

    async def remove_agent(self, agent_id: str) -> None:
        """Unregister the agent; its running runs are cancelled as if it went offline."""
        if not await self._write(RemoveAgent(agent_id, self._now())):
            raise NotFound(f"no agent {agent_id!r}")

    async def agent_heartbeat(self, agent_id: str, status: str | None = None) -> Agent:
        """The agent is alive: seen now, and ready again if it was offline or degraded
        (``status``: ready, sleeping or busy, as it reports)."""
        op = heartbeat_op(agent_id, self._now(), status)
        if (await self._write(op))[0] is None:
            raise NotFound(f"no agent {agent_id!r}")
        return await self.agent(agent_id)

    async def agent_seen(self, agent_id: str) -> None:
        """The agent claimed or reported work (a worker, over HTTP): seen now, and ready
        again if it was offline; a degraded agent stays degraded and its failures stand
        (only a heartbeat of its own brings it back). NotFound: no such agent."""
        now = self._now()
        seen = AgentState(id=agent_id, seen=now)
        back = AgentState(id=agent_id, status="ready", when=("offline",))
        if (await self._write(AgentStates([seen, back], now)))[0] is None:
            raise NotFound(f"no agent {agent_id!r}")

    async def register_config_agents(self, cfg: Config) -> None:
        """At start: the agents the config names (and the gateway's ``main``)."""
        now = self._now()
        for spec, source in config_agents(cfg):
            await write(self._writer, SaveAgent(spec=spec, source=source, mode="register", now=now))
        await self._dispatcher.send(Poke(agents=True))

    async def _state(self, state: AgentState) -> Agent:
        if (await self._write(AgentStates([state], self._now())))[0] is None:
            raise NotFound(f"no agent {state.id!r}")
        return await self.agent(state.id)

    async def _write(self, op: Any) -> Any:
        got = await write(self._writer, op)
        await self._dispatcher.send(Poke(agents=True))
        return got

    def _now(self) -> float:
        return self.clock.wall()
