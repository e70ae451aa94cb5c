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

from shepherd.runtime._cli_fmt import emit_json, human_duration, print_fields, table, when
from shepherd.runtime._cli_status_parts import node_lines, nodes_status  # re-exported
from shepherd.runtime._cli_store import daemon_pid, open_store
from shepherd.runtime.config import Config
from shepherd.store.factory import is_postgres

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
