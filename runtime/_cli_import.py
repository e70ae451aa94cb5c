"""``shepherd import ocs PATH [--dry-run] [--partial] [--history N]``: import an openclaw-scheduler
database (runtime/ocs_import).

The OCS file is read read-only (refused while an OCS process holds it, exit 2); every
row is mapped and validated; then ONE write op stores everything in one transaction
(all or nothing) and the daemon serving the shepherd database, if any, is woken to
read the new jobs, dispatches, approvals and agents. A dry run asks the same op to
decide without writing (a database that does not exist yet is not created).

Exit codes: 0 everything maps; 1 something needs attention (a field not carried, an
alias missing from the config, a job that cannot be imported: without ``--partial``
nothing is imported then); 2 bad input (not an OCS database, an unknown schema
version, a database in use).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.runtime._cli_fmt import emit_json
from shepherd.runtime._cli_store import bounded_int, builtin_executors, open_store, origin, wall
from shepherd.runtime.config import Config
from shepherd.runtime.ocs_import import batch_op, build_report, plan_import, read_ocs, render_report
from shepherd.store.bounds import Range
from shepherd.store.errors import StoreError
from shepherd.store.ops.imports import ImportBatch, Imported, ImportItem

__all__ = ["add_import_commands", "cmd_import_ocs", "import_ocs"]


def add_import_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    group = sub.add_parser("import", help="import from another scheduler").add_subparsers(
        dest="import_command", required=True, metavar="SOURCE"
    )
    p = cmd(group, "ocs", cmd_import_ocs, "import an openclaw-scheduler database (read-only)")
    p.add_argument("path", metavar="PATH", help="the openclaw-scheduler SQLite file")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.add_argument(
        "--partial", action="store_true", help="import what maps even if some jobs cannot"
    )
    p.add_argument(
        "--history",
        type=bounded_int(Range(0, 1_000_000)),
        default=0,
        metavar="N",
        help="also keep the newest N finished runs of each job, as read-only records",
    )


def cmd_import_ocs(args: argparse.Namespace, cfg: Config) -> int:
    report = import_ocs(
        cfg, args.path, dry_run=args.dry_run, partial=args.partial, history=args.history
    )
    if args.json:
        emit_json(report)
    else:
        print(render_report(report), end="")
    return 1 if report["blocked"] or report["attention"] else 0


def import_ocs(
    cfg: Config, path: str, *, dry_run: bool, partial: bool, history: int = 0
) -> dict[str, Any]:
    """Read, plan, and (unless ``dry_run`` or blocked) import; the report."""
    now = wall()
    data = read_ocs(path, history=history)
    aliases = {k: (v.channel, v.target) for k, v in cfg.delivery.aliases.items()}
    plan = plan_import(data, builtin_executors(cfg), aliases, now, history=history)
    blocked = bool(plan.rejected) and not partial
    op = batch_op(plan, now, origin(), dry_run=dry_run)
    done: Imported | None = None
    if dry_run and not os.path.exists(cfg.database):
        done = _all_new(op)  # a dry run creates no database
    elif dry_run or not blocked:
        done = anyio.run(_apply, cfg, op)
        if not dry_run:
            send_wake(cfg.database, "jdaA")  # jobs, dispatches, approvals, agents
    return build_report(plan, done, dry_run=dry_run, partial=partial)


async def _apply(cfg: Config, op: ImportBatch) -> Imported:
    async with open_store(cfg) as store:
        result = await store.apply_one(op)
    if isinstance(result, StoreError):  # pragma: no cover - apply_one raises it
        raise result
    assert isinstance(result, Imported)
    return result


def _all_new(op: ImportBatch) -> Imported:
    """What a dry run against a database that does not exist yet reports."""
    items = [
        ImportItem(
            kind="job",
            source_id=j.source_id,
            status="created",
            target=j.name,
            next_run_at=j.next_run_at,
        )
        for j in op.jobs
    ]
    items += [
        ImportItem(kind="agent", source_id=a.source_id, status="created", target=a.spec.id)
        for a in op.agents
    ]
    items += [
        ImportItem(kind="dispatch", source_id=d.source_id, status="created", target="")
        for d in op.dispatches
    ]
    items += [
        ImportItem(kind="message", source_id=m.source_id, status="created", target="")
        for m in op.messages
    ]
    items += [
        ImportItem(kind="run", source_id=r.source_id, status="created", target="") for r in op.runs
    ]
    return Imported(items=items)
