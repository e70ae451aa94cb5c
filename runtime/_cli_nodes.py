"""``shepherd nodes``: the runtimes (nodes) that share this database, and who leads.

On PostgreSQL several runtimes serve one database; each holds a lease it renews
(``[cluster] lease``) under an epoch, and one of them leads the scheduler (the advisory
lock: ``store.postgres.leader``). This lists every node the database knows: its
status (``alive``, ``expired``: its lease ran out and it is not rescued yet, ``dead``:
rescued, its runs taken over, ``left``: it stopped), its epoch, the age of its lease,
its host and pid, and whether it leads. The leader is the lock's holder as the server
sees it, not a flag a node wrote. On SQLite there is a single node, the runtime that
serves the file: the command says so.

``nodes_status`` is the summary ``shepherd status`` shows (both engines).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import anyio
import msgspec

from shepherd.runtime._cli_fmt import emit_json, human_duration, print_fields, table, when
from shepherd.runtime._cli_store import daemon_pid, open_store
from shepherd.runtime.config import Config
from shepherd.store.factory import is_postgres
from shepherd.store.protocol import Store

__all__ = ["add_cluster_commands", "cmd_nodes", "node_lines", "nodes_status"]


def add_cluster_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """``nodes`` and ``db upgrade`` (``runtime._cli_db``) in ``build_parser``."""
    from shepherd.runtime._cli_db import add_db_commands

    cmd(sub, "nodes", "_cli_nodes:cmd_nodes", "the runtimes sharing this database, who leads")
    add_db_commands(sub, cmd)


def cmd_nodes(args: argparse.Namespace, cfg: Config) -> int:
    data = anyio.run(_nodes, cfg)
    if not data["cluster"]:
        pid = daemon_pid(cfg.database)
        data["daemon"] = {"serving": pid is not None, "pid": pid}
    if args.json:
        emit_json(data)
        return 0
    if not data["cluster"]:
        serving = f"served by pid {pid}" if pid is not None else "no runtime serves it now"
        print(
            f"{cfg.database} is a SQLite file: a single node, the one runtime that serves"
            f" it ({serving}). Several nodes share a PostgreSQL database"
            ' (database = "postgresql://...").'
        )
        return 0
    print_fields(node_lines(data))
    if data["nodes"]:
        print()
        table([_row(n, data["leader"]) for n in data["nodes"]], _COLUMNS)
    return 0


async def _nodes(cfg: Config) -> dict[str, Any]:
    async with open_store(cfg, create=False) as store:
        return await nodes_status(store, cluster=is_postgres(cfg.database))


async def nodes_status(store: Store, *, cluster: bool) -> dict[str, Any]:
    """What ``nodes --json`` prints, and the ``cluster`` part of ``status``: every node
    (``cluster``: the engine shares the database between nodes), their count by
    status, and the scheduler's leader."""
    nodes = [msgspec.structs.asdict(n) for n in await store.nodes()] if cluster else []
    leader = await store.scheduler_leader() if cluster else None
    full = _leader_name(leader, [str(n["name"]) for n in nodes])
    for n in nodes:
        n["leader"] = n["name"] == full
    counts: dict[str, int] = {}
    for n in nodes:
        counts[str(n["status"])] = counts.get(str(n["status"]), 0) + 1
    return {
        "cluster": cluster,
        "engine": "postgresql" if cluster else "sqlite",
        "leader": full,
        "counts": counts,
        "nodes": nodes,
    }


def _leader_name(leader: str | None, names: list[str]) -> str | None:
    """The node name the lock holder's (possibly cut) name stands for."""
    if leader is None or leader in names:
        return leader
    longer = [n for n in names if n.startswith(leader)]
    return longer[0] if len(longer) == 1 else leader


def node_lines(data: dict[str, Any]) -> dict[str, Any]:
    """The ``nodes`` / ``leader`` lines of ``status`` and ``nodes`` (PostgreSQL)."""
    counts = data["counts"]
    order = ("alive", "expired", "dead", "left")
    keys = [s for s in order if s in counts] + sorted(s for s in counts if s not in order)
    text = ", ".join(f"{counts[s]} {s}" for s in keys)
    return {
        "nodes": text or "none registered",
        "scheduler leader": data["leader"] or "none (no node holds the lock)",
    }


_COLUMNS = ("node", "status", "epoch", "lease age", "lease", "host", "pid", "since", "leader")


def _row(n: dict[str, Any], leader: str | None) -> dict[str, Any]:
    return {
        "node": n["name"],
        "status": n["status"],
        "epoch": n["epoch"],
        "lease age": human_duration(round(float(n["lease_age"]), 1)),
        "lease": human_duration(float(n["lease"])),
        "host": n["host"],
        "pid": n["pid"],
        "since": when(n["joined_at"]),
        "leader": "yes" if n["name"] == leader else "",
    }
