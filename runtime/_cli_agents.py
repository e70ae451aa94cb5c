"""``shepherd agents ...``: the agents registry from the command line (README "Agents").

    agents list                                   every agent: status, running, capabilities
    agents show ID
    agents add ID [--name N] [--capabilities a,b] [--policy always-on|on-demand]
                  [--max-concurrent N] [--status ready|sleeping] [--delivery T]
                  [--model M] [--wake CMD|URL] [--wake-timeout DUR]
    agents update ID [same flags] [--status ready|sleeping|busy|degraded|offline]
    agents drain ID | undrain ID | rm ID
    agents heartbeat ID [--status ready|sleeping|busy]

Each command opens the store, applies one write op built with the Runtime's own checks
(``runtime/_agents_api.py``) and wakes the daemon (flag ``A``: it reads the agents
written since the newest it saw). Bad input exits 2 naming the flag, nothing stored;
an unknown agent exits 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._agents_api import (
    SETTABLE_STATUSES,
    agent_spec,
    heartbeat_op,
    status_op,
    update_op,
)
from shepherd.runtime._cli_enqueue import as_flag
from shepherd.runtime._cli_fmt import emit_json, print_fields, table, when
from shepherd.runtime._cli_status_parts import agents_lines, agents_status  # re-exported
from shepherd.runtime._cli_store import duration, open_store, positive_int, wall
from shepherd.runtime.config import Config
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import Agent
from shepherd.store.ops import AgentState, AgentStates, RemoveAgent, SaveAgent, WriteOp

__all__ = ["add_agents_commands", "agents_lines", "agents_status"]

_FLAGS = {
    "name": "--name",
    "capabilities": "--capabilities",
    "policy": "--policy",
    "max_concurrent": "--max-concurrent",
    "status": "--status",
    "delivery": "--delivery",
    "model": "--model",
    "wake": "--wake",
    "wake_timeout": "--wake-timeout",
}


def add_agents_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``agents`` group in ``build_parser`` (``cmd`` adds one command)."""
    agents = sub.add_parser("agents", help="the agents registry").add_subparsers(
        dest="agents_command", required=True, metavar="ACTION"
    )
    cmd(agents, "list", cmd_list, "every agent: status, runs in flight, capabilities")
    p = cmd(agents, "show", cmd_show, "one agent")
    p.add_argument("id", metavar="ID")
    p = cmd(agents, "add", cmd_add, "register an agent")
    p.add_argument("id", metavar="ID")
    _definition_flags(p)
    p.add_argument("--status", choices=("ready", "sleeping"), help="default ready")
    p = cmd(agents, "update", cmd_update, "change some fields of an agent")
    p.add_argument("id", metavar="ID")
    _definition_flags(p)
    p.add_argument("--status", choices=SETTABLE_STATUSES, help="offline cancels its runs")
    for name, fn, text in (
        ("drain", cmd_drain, "give the agent nothing new; its running runs finish"),
        ("undrain", cmd_undrain, "a draining agent takes work again"),
        ("rm", cmd_rm, "unregister an agent (its running runs are cancelled)"),
    ):
        p = cmd(agents, name, fn, text)
        p.add_argument("id", metavar="ID")
    p = cmd(agents, "heartbeat", cmd_heartbeat, "the agent is alive (ready again if offline)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--status", choices=("ready", "sleeping", "busy"))


def _definition_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="NAME")
    p.add_argument("--capabilities", metavar="A,B", help="comma-separated; * = every one")
    p.add_argument("--policy", choices=("always-on", "on-demand"))
    p.add_argument("--max-concurrent", type=positive_int, metavar="N", help="default 3")
    p.add_argument("--delivery", metavar="TARGET", help="where its results go")
    p.add_argument("--model", metavar="MODEL", help="the model its agent turns ask for")
    p.add_argument("--wake", metavar="CMD|URL", help="how to wake it when sleeping")
    p.add_argument("--wake-timeout", type=duration, metavar="DUR")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value.split(",") if name == "capabilities" else value
    return out


def _flag_error(exc: ConfigError) -> ConfigError:
    """The error naming the flag (``--capabilities``) instead of the field."""
    flagged = as_flag(exc, {**_FLAGS, "id": "ID"})
    return flagged if flagged is not None else exc


def row(a: Agent) -> dict[str, Any]:
    return {
        "id": a.id,
        "status": a.status,
        "running": f"{a.running}/{a.max_concurrent}",
        "policy": a.policy,
        "capabilities": ",".join(a.capabilities) or "-",
        "seen": when(a.last_seen) if a.last_seen is not None else "-",
        "source": a.source,
    }


def _show(a: Agent, as_json: bool) -> int:
    if as_json:
        emit_json(a)
    else:
        print_fields({**row(a), "name": a.name, "model": a.model, "delivery": a.delivery})
    return 0


def cmd_list(args: argparse.Namespace, cfg: Config) -> int:
    agents = anyio.run(_read_all, cfg)
    if args.json:
        emit_json(agents)
    else:
        cols = ("id", "status", "running", "policy", "capabilities", "seen", "source")
        table([row(a) for a in agents], cols)
    return 0


def cmd_show(args: argparse.Namespace, cfg: Config) -> int:
    return _show(anyio.run(_read, cfg, args.id), args.json)


def cmd_add(args: argparse.Namespace, cfg: Config) -> int:
    try:
        spec = agent_spec(args.id, **_fields(args))
    except ConfigError as exc:
        raise _flag_error(exc) from None
    op = SaveAgent(spec=spec, source="api", mode="add", now=wall())
    got = anyio.run(_apply, cfg, op, True)
    if got == "exists":
        raise ConfigError(f"an agent {args.id!r} exists (agents update it)", field="ID")
    return _done(args, cfg)


def cmd_update(args: argparse.Namespace, cfg: Config) -> int:
    changes = _fields(args)
    status = changes.pop("status", None)
    if not changes and status is None:
        raise ConfigError("nothing to change: give a flag", field="--capabilities")
    anyio.run(_update, cfg, args.id, changes, status)
    return _done(args, cfg)


async def _update(cfg: Config, agent_id: str, changes: dict[str, Any], status: str | None) -> None:
    async with open_store(cfg, create=False) as store:
        current = await store.agent(agent_id)
        if current is None:
            raise NotFound(f"no agent {agent_id!r}")
        ops: list[WriteOp] = []
        try:
            if changes:
                ops.append(update_op(current, changes, wall()))
            if status is not None:
                ops.append(status_op(agent_id, status, wall()))
        except ConfigError as exc:
            raise _flag_error(exc) from None
        for op in ops:
            await store.apply_one(op)


def cmd_drain(args: argparse.Namespace, cfg: Config) -> int:
    return _state(args, cfg, AgentState(id=args.id, status="draining"))


def cmd_undrain(args: argparse.Namespace, cfg: Config) -> int:
    return _state(args, cfg, AgentState(id=args.id, status="ready", when=("draining",)))


def cmd_heartbeat(args: argparse.Namespace, cfg: Config) -> int:
    [status] = anyio.run(_apply, cfg, heartbeat_op(args.id, wall(), args.status))
    if status is None:
        raise NotFound(f"no agent {args.id!r}")
    return _done(args, cfg)


def cmd_rm(args: argparse.Namespace, cfg: Config) -> int:
    if not anyio.run(_apply, cfg, RemoveAgent(args.id, wall())):
        raise NotFound(f"no agent {args.id!r}")
    send_wake(cfg.database, "A")
    if args.json:
        emit_json({"id": args.id, "removed": True})
    else:
        print(f"agent {args.id} removed")
    return 0


def _state(args: argparse.Namespace, cfg: Config, state: AgentState) -> int:
    [status] = anyio.run(_apply, cfg, AgentStates([state], wall()))
    if status is None:
        raise NotFound(f"no agent {args.id!r}")
    return _done(args, cfg)


def _done(args: argparse.Namespace, cfg: Config) -> int:
    send_wake(cfg.database, "A")
    return _show(anyio.run(_read, cfg, args.id), args.json)


# -- `status` -----------------------------------------------------------------------


async def _apply(cfg: Config, op: WriteOp, create: bool = False) -> Any:
    async with open_store(cfg, create=create) as store:
        return await store.apply_one(op)


async def _read_all(cfg: Config) -> list[Agent]:
    async with open_store(cfg, create=False) as store:
        return await store.agents()


async def _read(cfg: Config, agent_id: str) -> Agent:
    async with open_store(cfg, create=False) as store:
        got = await store.agent(agent_id)
    if got is None:
        raise NotFound(f"no agent {agent_id!r}")
    return got
