"""``shepherd backup PATH`` and ``shepherd restore BACKUP --to DB``.

``backup`` copies the database with SQLite's online backup API on a connection of its
own: one snapshot, copied in steps, while a daemon serving the file keeps committing;
the copy appears at ``PATH`` whole or not at all (temporary file, fsync, rename). On
PostgreSQL it is ``pg_dump --format=custom`` of the database's schema, put in place
the same way (``store.postgres.backup``). An
existing ``PATH`` is refused without ``--force`` (exit 1); a directory that does not
exist or cannot be written is a store error naming the path (exit 3).

``restore`` runs the full integrity check on the backup first, refuses a target a
daemon serves (its lock file, ``runtime/_lock.py``; exit 3) and an existing target
without ``--force`` (exit 1), then takes the target's lock itself, so no daemon starts
on it meanwhile, and puts the copy in place atomically. A PostgreSQL database is
restored with ``pg_restore``: ``restore`` refuses it (a ``ConfigError`` naming
``database``, exit 2) with the command to run.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import anyio

from shepherd.actors.socket_path import resolved
from shepherd.runtime._cli_fmt import CliError, emit_json, human_duration
from shepherd.runtime._cli_progress import Progress, progress
from shepherd.runtime._cli_store import daemon_pid, open_store
from shepherd.runtime._lock import lock_database
from shepherd.runtime.config import Config
from shepherd.store import factory
from shepherd.store.errors import ConfigError, StoreError

__all__ = ["cmd_backup", "cmd_restore"]


def _advance(bar: Progress) -> Any:
    def step(done: int, total: int) -> None:
        bar.total = total
        bar.advance(done - bar.done)

    return step


def _refuse_existing(path: str, force: bool, flag: str = "--force") -> None:
    if os.path.lexists(path) and not force:
        raise CliError(f"{path} exists; pass {flag} to overwrite it", code=1)


def cmd_backup(args: argparse.Namespace, cfg: Config) -> int:
    target = args.path
    if os.path.abspath(target) == os.path.abspath(cfg.database):
        raise CliError(f"{target}: is the database itself; back up to another path", code=2)
    _refuse_existing(target, args.force)

    async def go() -> tuple[int, float]:
        async with open_store(cfg, create=False) as store:
            began = time.perf_counter()
            with progress(0, "backup") as bar:
                size = await store.backup(target, progress=_advance(bar))
            return size, time.perf_counter() - began

    size, seconds = anyio.run(go)
    out = {"backup": target, "database": cfg.database, "bytes": size, "seconds": seconds}
    if args.json:
        emit_json(out)
    else:
        print(f"backup {target}: {_size(size)} in {human_duration(seconds)}")
    return 0


def cmd_restore(args: argparse.Namespace, cfg: Config) -> int:
    target = args.to or cfg.database
    if factory.is_postgres(target):
        from shepherd.store.postgres.backup import restore_command

        raise ConfigError(
            "shepherd restore puts a SQLite file in place; restore a PostgreSQL database"
            " with pg_restore, every runtime on it stopped: "
            + restore_command(target, args.backup),
            field="--to" if args.to else "database",
        )
    pid = daemon_pid(target)
    if pid is not None:
        raise StoreError(f"{target}: served by a running daemon (pid {pid}); stop it first")
    _refuse_existing(target, args.force)

    async def go() -> int:
        # no daemon starts on it while we restore; a missing file is created by the rename
        lock = await lock_database(target, create=False)
        try:
            with progress(0, "restore") as bar:
                return await anyio.to_thread.run_sync(
                    lambda: factory.restore_backup(
                        args.backup, resolved(target), progress=_advance(bar)
                    )
                )
        finally:
            lock.close()

    version = anyio.run(go)
    out = {"restored": args.backup, "database": target, "schema_version": version}
    if args.json:
        emit_json(out)
    else:
        print(f"restored {args.backup} to {target} (integrity ok, schema {version})")
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
