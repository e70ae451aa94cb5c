"""``shepherd db upgrade``: migrate the database's schema to this shepherd's level.

On PostgreSQL the nodes of a cluster refuse a schema older than themselves (``run
shepherd db upgrade``) and newer than themselves; upgrading is this command, run once
(several at once migrate once: an advisory lock). On SQLite a runtime migrates its file
when it opens it; this command does the same without starting one. It says from which
version to which; a schema newer than this shepherd is refused (exit 3), untouched.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import anyio

from shepherd.runtime._cli_fmt import emit_json
from shepherd.runtime.config import Config

__all__ = ["add_db_commands", "cmd_db_upgrade"]


def add_db_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """``db upgrade`` in ``build_parser``."""
    db = sub.add_parser("db", help="the database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    cmd(
        db,
        "upgrade",
        "_cli_db:cmd_db_upgrade",
        "migrate the database schema to this shepherd's version",
    )


def cmd_db_upgrade(args: argparse.Namespace, cfg: Config) -> int:
    from shepherd.store.upgrade import upgrade_schema  # the engines: only when it runs

    done = anyio.run(upgrade_schema, cfg.database)
    if args.json:
        emit_json({**_fields(done), "migrated": done.migrated})
        return 0
    where = done.database + (f" (schema {done.schema})" if done.schema else "")
    if done.migrated:
        print(f"{where}: schema upgraded from version {done.before} to {done.after}")
    else:
        print(f"{where}: schema already at version {done.after} (nothing to do)")
    return 0


def _fields(done: Any) -> dict[str, Any]:
    return {
        "engine": done.engine,
        "database": done.database,
        "schema": done.schema,
        "from": done.before,
        "to": done.after,
    }
