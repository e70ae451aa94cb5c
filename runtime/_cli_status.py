"""``shepherd status``: queue depth by state, running runs, dead letters, jobs, whether a
daemon serves the database, and the latest health snapshot a runtime left in the
``instances`` table (written by ``actors.health`` every ``health_interval``), failed
spawn messages (how many, the latest errors), open task groups, and with ``[spool]``
the spool directory's pending and rejected files. On PostgreSQL every count is the
database's, so cluster-wide, and ``cluster`` adds the nodes sharing it and the
scheduler's leader (``runtime._cli_nodes``).

On a SQLite file the command reads without an event loop: ``store.sqlite.reader``
opens the file as the engine does (the same checks and migrations) on one plain
connection and runs the engine's own read functions on it, so ``gather_status`` runs
to its end without suspending. A PostgreSQL URL opens the store (``open_store``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import msgspec

from shepherd.runtime._cli_fmt import CliError, emit_json, human_duration, print_fields, table, when
from shepherd.runtime._cli_status_parts import (
    agents_lines,
    agents_status,
    control_lines,
    controls_status,
    node_lines,
    nodes_status,
    run_row,
)
from shepherd.runtime._cli_store import daemon_pid
from shepherd.store.models import Run

if TYPE_CHECKING:
    from shepherd.runtime.config import Config
    from shepherd.store.protocol import Store
    from shepherd.store.sqlite.reader import SqliteReader

__all__ = ["cmd_status", "gather_status", "show_status", "spool_status", "status_data"]


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    gathered = _status_sqlite(cfg) if "://" not in cfg.database else _status_url(cfg)
    data = status_data(cfg.database, daemon_pid(cfg.database), *gathered)
    if cfg.spool is not None:  # counted in the directory: right with or without a daemon
        data["spool"] = spool_status(cfg.spool.dir)
    return show_status(args, data)


def status_data(
    database: str,
    pid: int | None,
    stats: dict[str, Any],
    running: list[Run],
    instance: dict[str, Any] | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """What ``status --json`` prints, before its times become ISO text (``GET
    /api/v1/status`` answers it with epoch seconds and the sections after
    ``approvals_pending`` under ``extra``; ``runtime._cli_remote`` maps it back)."""
    return {
        "database": database,
        "daemon": {"serving": pid is not None, "pid": pid},
        "dispatches": stats["dispatches"],
        "dead_letters": stats["dispatches"]["dead"],
        "runs_running": stats["runs_running"],
        "running": running,
        "jobs": stats["jobs"],
        "jobs_enabled": stats["jobs_enabled"],
        "instance": instance,
        "approvals_pending": stats.get("approvals_pending", 0),
        **extra,
    }


def show_status(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """Print ``data`` (``status_data``'s, read here or from a daemon's API)."""
    if args.json:
        emit_json(data)
        return 0
    pid = data["daemon"]["pid"]
    instance = data["instance"]
    fields: dict[str, Any] = {
        "database": data["database"],
        "daemon": f"serving (pid {pid})" if data["daemon"]["serving"] else "not running",
        "dispatches": "  ".join(f"{k} {v}" for k, v in data["dispatches"].items()),
        "dead letters": data["dead_letters"],
        "running runs": data["runs_running"],
        "jobs": f"{data['jobs']} ({data['jobs_enabled']} enabled)",
    }
    cluster = data.get("cluster") or {}
    if cluster.get("cluster"):  # PostgreSQL: the nodes' leases, not a local lock file
        alive = cluster["counts"].get("alive", 0)
        fields["daemon"] = f"{alive} node(s) alive" if alive else "no node alive"
        fields.update(node_lines(cluster))
    if data["spawn_failed"]["count"]:
        failed = data["spawn_failed"]
        latest = "; ".join(f"#{f['id']} from {f['from']}: {f['error']}" for f in failed["latest"])
        fields["failed spawns"] = f"{failed['count']} (latest: {latest})"
    if data["approvals_pending"]:  # `shepherd approvals list --status pending` lists them
        fields["approvals"] = f"{data['approvals_pending']} pending"
    if data["groups_open"]:
        fields["task groups"] = f"{data['groups_open']} open"
    fields.update(control_lines(data))
    fields.update(agents_lines(data))
    if "spool" in data:
        sp = data["spool"]
        fields["spool"] = f"{sp['dir']}: {sp['pending']} pending, {sp['rejected']} rejected"
    if instance is not None:
        fields.update(_health_lines(instance))
    print_fields(fields)
    running = [msgspec.convert(r, Run) if isinstance(r, dict) else r for r in data["running"]]
    if running:
        print()
        table([run_row(r) for r in running], ("id", "dispatch", "job", "attempt", "started"))
    return 0


_Gathered = tuple[dict[str, Any], list[Run], dict[str, Any] | None, dict[str, Any]]


def _status_sqlite(cfg: Config) -> _Gathered:
    """``gather_status`` on the file, without an event loop (``store.sqlite.reader``)."""
    import os

    from shepherd.runtime._cli_help import first_run_hint
    from shepherd.store.sqlite.reader import SqliteReader, run_sync

    if not os.path.exists(cfg.database):  # as open_store(create=False)
        raise CliError(first_run_hint(cfg.database), code=1)
    reader = SqliteReader.open(
        cfg.database,
        synchronous=cfg.synchronous,
        busy_timeout=float(cfg.busy_timeout),
        check="bounded",
    )
    with reader:
        return run_sync(gather_status(reader))


def _status_url(cfg: Config) -> _Gathered:
    import anyio

    from shepherd.runtime._cli_store import open_store

    async def gather() -> _Gathered:
        async with open_store(cfg, create=False) as store:
            return await gather_status(store)

    return anyio.run(gather)


async def gather_status(store: Store | SqliteReader) -> _Gathered:
    """(stats, running runs, the latest instance row, the rest) read from ``store``."""
    stats = await store.stats()
    running = await store.runs(status="running", limit=50)
    instance = await store.latest_instance()
    failed, latest = await store.failed_spawns(limit=3)
    groups = await store.group_deadlines()  # one row per open group
    pauses = await store.pauses()
    agents = await store.agents()
    cluster = store.statistics().get("engine") == "postgresql"
    extra = {  # spawn messages that failed (with their errors), open task groups
        "cluster": await nodes_status(store, cluster=cluster),  # nodes, leader: _cli_nodes
        "spawn_failed": {"count": failed, "latest": latest},
        "groups_open": len(groups),
        **controls_status(pauses, instance),  # pauses and rate limits: _cli_controls
        **agents_status(agents, instance),  # the registry, unmatched: _cli_agents
    }
    return stats, running, instance, extra


def spool_status(directory: str) -> dict[str, Any]:
    """``status``'s ``spool``: the directory and its pending and rejected files."""
    from shepherd.actors.spool.files import spool_counts  # not .actor: no watcher to load

    try:
        return {"dir": directory, **spool_counts(directory)}
    except OSError as exc:  # status still reports the rest
        return {"dir": directory, "pending": None, "rejected": None,
                "error": exc.strerror or str(exc)}  # fmt: skip


def _health_lines(instance: dict[str, Any]) -> dict[str, Any]:
    """A few compact lines from the snapshot; ``--json`` has all of it."""
    health = instance.get("health") or {}
    state = f"stopped {when(instance['stopped_at'])}" if instance["stopped_at"] else "running"
    out: dict[str, Any] = {
        "instance": f"{instance['instance']} (pid {instance['pid']}), {state}, "
        f"snapshot {when(instance['updated_at'])}",
    }
    if health.get("start_check"):
        out["start check"] = health["start_check"]
    sup = health.get("supervisor") or {}
    children = sup.get("children") or {}
    if children:
        down = [name for name, c in children.items() if not c.get("running")]
        up = f"{len(children) - len(down)}/{len(children)} up" + (
            f" (down: {', '.join(down)})" if down else ""
        )
        counts = f"restarts {sup.get('restarts', 0)}, crashes {sup.get('crashes', 0)}"
        # a stopped runtime's last snapshot is taken while its actors stop
        out["actors"] = counts if instance["stopped_at"] else f"{up}, {counts}"
    dispatcher = health.get("dispatcher") or {}
    breakers = dispatcher.get("breakers") or {}
    if breakers:
        out["breakers"] = ", ".join(f"{k} {v.get('state')}" for k, v in breakers.items())
    if "recovered" in dispatcher:
        out["recovery"] = (
            f"{dispatcher['recovered']} orphaned run(s) resolved in "
            f"{human_duration(float(dispatcher.get('recovery_seconds') or 0))}"
        )
    spool = health.get("spool")
    if spool:
        out["spool ingest"] = f"{spool['ingested']} ingested, {spool['rejected']} rejected"
    last = (health.get("pruner") or {}).get("last_pass")
    if last:
        pruned = ", ".join(f"{n} {k}" for k, n in last["pruned"].items() if n) or "nothing"
        took = human_duration(last["seconds"])
        out["retention"] = f"last pass {when(last['at'])} ({took}): {pruned}"
    backup = health.get("backup") or {}
    if backup.get("every"):
        done = backup.get("last")
        text = (
            f"last {when(done['at'])} ({human_duration(done['seconds'])}, {done['bytes']} bytes)"
            f" {done['path']}"
            if done
            else "none yet"
        )
        if backup.get("failures"):
            text += f"; {backup['failures']} failed, last error: {backup.get('last_error')}"
        out["backup"] = f"{text}; next {when(backup.get('next_at'))}"
    return out
