"""``Producer``'s path when no daemon serves the database: write the dispatches
directly (one transaction per call), then send the wake-up datagram, as ``shepherd
enqueue`` does without a daemon. Checks and errors are ``Runtime.enqueue``'s."""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio

from shepherd.actors.ingest import send_wake
from shepherd.actors.ingest_wire import EnqueueItem
from shepherd.runtime._cli_help import first_run_hint
from shepherd.runtime._cli_store import builtin_executors, open_store, origin, wall
from shepherd.runtime._jobs_api import build_request
from shepherd.runtime.config import Config, load_config
from shepherd.runtime.jobs import check_payload, new_dispatch
from shepherd.store.errors import ConfigError, Conflict, NotFound, ShepherdError
from shepherd.store.ops import InsertDispatches, NewDispatch

__all__ = ["enqueue_direct"]

Got = tuple[int, bool] | ShepherdError


def enqueue_direct(database: str, cfg: Config | None, items: Sequence[EnqueueItem]) -> list[Got]:
    cfg = cfg if cfg is not None else load_config(None, database=database)
    out = anyio.run(_enqueue, cfg, items)
    if any(isinstance(r, tuple) and not r[1] for r in out):
        send_wake(cfg.database, "d")
    return out


async def _enqueue(cfg: Config, items: Sequence[EnqueueItem]) -> list[Got]:
    if "://" not in cfg.database and not os.path.exists(cfg.database):  # noqa: ASYNC240
        # no database, so no job: nothing is created for a request that names none
        hint = first_run_hint(cfg.database)
        return [NotFound(f"no job named {item.job!r}; {hint}") for item in items]
    executors = builtin_executors(cfg) if cfg.app else None
    now = wall()
    out: list[Got] = []
    rows: list[NewDispatch] = []
    async with open_store(cfg) as store:
        for item in items:
            try:
                req = build_request(
                    now,
                    item.job,
                    item.payload,
                    **item.options(),
                )
                row = await store.job(req.job)
                if row is None:
                    raise NotFound(f"no job named {req.job!r}")
                new = new_dispatch(row, req, now, where="")
                if executors is not None:
                    check_payload(row.spec, req.payload, executors)
            except (ConfigError, NotFound) as exc:
                out.append(exc)
                continue
            rows.append(new)
            out.append((len(rows) - 1, False))
        if not rows:
            return out
        valid = [i for i, got in enumerate(out) if isinstance(got, tuple)]
        groups = [rows] if len(rows) == 1 else [rows, *([r] for r in rows)]
        committed: list[Got] = []
        for group in groups:  # all at once; one refused at commit: each on its own
            try:
                got = await store.apply_one(InsertDispatches(group, origin(), now))
            except (ConfigError, Conflict, NotFound) as exc:
                if len(rows) == 1 or group is not rows:
                    committed.append(exc)
                continue
            committed.extend(_pair(g) for g in got)
            if group is rows:
                break
    for i, got in zip(valid, committed, strict=True):
        out[i] = got
    return out


def _pair(got: int | tuple[int, int]) -> tuple[int, bool]:
    return (got, True) if isinstance(got, int) else (got[0], False)
