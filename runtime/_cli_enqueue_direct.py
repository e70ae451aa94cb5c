"""``shepherd enqueue``'s direct write, when no daemon answers on the enqueue socket
(``_cli_enqueue``): the flags checked, the dispatch written, the daemon (if one starts)
woken. On an existing SQLite file with no app configured the write runs on a plain
connection in this thread (``store.sqlite.reader``: the engine's checks, migrations and
``apply_batch``), so the command loads no event loop; on PostgreSQL, with an app (its
targets check the payload) or before the file exists, through the store as every
command writes (``_cli_ops.enqueue_one``)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from shepherd.actors.socket_path import send_wake
from shepherd.runtime._cli_fmt import CliError, emit_json
from shepherd.runtime._cli_store import wall
from shepherd.runtime.jobs import check_enqueue
from shepherd.store.errors import ConfigError, NotFound
from shepherd.store.models import EnqueueRequest

if TYPE_CHECKING:
    from shepherd.runtime.config import Config

__all__ = ["cmd_enqueue", "enqueue_sync"]


def cmd_enqueue(args: argparse.Namespace, cfg: Config) -> int:
    if args.delay is not None and args.not_before is not None:
        raise CliError("--delay and --not-before exclude each other", code=2)
    try:
        key = args.idempotency_key
        check_enqueue(
            EnqueueRequest(job=args.job, idempotency_key=key),
            delay=args.delay,
            expires_in=args.expires_in,
        )
    except ConfigError as exc:  # name the flag
        flag = "--" + (exc.field or "").replace("_", "-")
        raise ConfigError(str(exc).removeprefix(f"{exc.field}: "), field=flag) from None
    now = wall()
    not_before = (
        args.not_before
        if args.not_before is not None
        else (now + args.delay if args.delay else None)
    )
    req = EnqueueRequest(
        job=args.job,
        payload=args.payload,
        priority=args.priority,
        not_before=not_before,
        expires_at=now + args.expires_in if args.expires_in else None,
        max_attempts=args.max_attempts,
        idempotency_key=args.idempotency_key,
        capabilities=args.capabilities.split(",") if args.capabilities is not None else None,
        owner=args.owner,
    )
    try:
        dispatch_id, duplicate = _write(cfg, req, now)
    except ConfigError as exc:  # name the flag
        from shepherd.runtime._cli_enqueue import as_flag

        flagged = as_flag(exc)
        if flagged is None:
            raise
        raise flagged from None
    if not duplicate:
        send_wake(cfg.database, "d")
    if args.json:
        duplicate = duplicate and not getattr(args, "key_generated", False)
        emit_json({"id": dispatch_id, "job": args.job, "duplicate": duplicate})
    elif duplicate and not getattr(args, "key_generated", False):
        print(f"{dispatch_id} (the existing dispatch of idempotency key {args.idempotency_key!r})")
    else:
        print(dispatch_id)
    return 0


def _write(cfg: Config, req: EnqueueRequest, now: float) -> tuple[int, bool]:
    if cfg.app or "://" in cfg.database or not os.path.exists(cfg.database):
        import anyio

        from shepherd.runtime._cli_ops import enqueue_one

        return anyio.run(enqueue_one, cfg, req, now)
    return enqueue_sync(cfg, req, now)


def enqueue_sync(cfg: Config, req: EnqueueRequest, now: float) -> tuple[int, bool]:
    """``_cli_ops.enqueue_one`` on an existing SQLite file, without an event loop: the
    bounded integrity check, the job read and one ``InsertDispatches`` transaction."""
    from shepherd.runtime._cli_store import origin
    from shepherd.runtime.jobs import new_dispatch
    from shepherd.store.ops import InsertDispatches
    from shepherd.store.sqlite.reader import SqliteReader, run_sync

    store = SqliteReader.open(
        cfg.database,
        synchronous=cfg.synchronous,
        busy_timeout=float(cfg.busy_timeout),
        check="bounded",
        writable=True,
    )
    with store:
        row = run_sync(store.job(req.job))
        if row is None:
            raise NotFound(f"no job named {req.job!r}")
        new = new_dispatch(row, req, now, where="")
        [got] = store.apply_one(InsertDispatches([new], origin(), now))
    if isinstance(got, int):  # the dispatch the producer's key is bound to, any state
        return got, True
    if got[1] == 0:  # held by its job's approval gate: the daemon times it out
        send_wake(cfg.database, "a")
    return int(got[0]), False
