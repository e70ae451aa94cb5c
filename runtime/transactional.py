"""Transactional enqueue on PostgreSQL: ``enqueue_in(conn, job, payload, ...)`` queues a
run of ``job`` on the application's own asyncpg connection, inside its transaction, so
the dispatch commits or rolls back with the application's data::

    async with conn.transaction():
        order_id = await conn.fetchval("INSERT INTO orders ... RETURNING id")
        await shepherd.runtime.enqueue_in(conn, "ship-order", {"order": order_id})

- Checks and errors are ``Runtime.enqueue``'s (a job that does not exist: ``NotFound``
  naming it; a disabled one, a bad priority or delay: ``ConfigError`` naming the field;
  the payload's type is checked where the target runs, as ``shepherd enqueue`` without
  ``--app`` does). Keyword options are ``Runtime.enqueue``'s.
- ``schema``: the shepherd schema, when it is not first in the connection's
  ``search_path`` (the ``?search_path=`` of the runtimes' ``database`` URL).
- The returned id is the dispatch's (the existing one when ``idempotency_key`` is
  already bound, as ``enqueue``). No runtime needs to run in this process: at commit,
  the table's NOTIFY wakes every node serving the database within milliseconds.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from shepherd.runtime._jobs_api import build_request
from shepherd.runtime.jobs import new_dispatch, plain_payload
from shepherd.store.errors import Conflict, NotFound
from shepherd.store.ops import InsertDispatches
from shepherd.store.postgres.enqueue import insert_in, job_in

__all__ = ["enqueue_in", "origin"]


def origin() -> str:
    """The ``origin`` of the rows ``enqueue_in`` writes: never a runtime's instance, so
    every runtime (this process's included) reads them when woken."""
    return f"app:{os.getpid()}"


async def enqueue_in(
    conn: asyncpg.Connection,
    job: str,
    payload: dict[str, Any] | msgspec.Struct | None = None,
    *,
    priority: str | None = None,
    not_before: float | datetime | None = None,
    delay: float | None = None,
    expires_at: float | datetime | None = None,
    expires_in: float | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    capabilities: list[str] | None = None,
    owner: str | None = None,
    schema: str | None = None,
) -> int:
    """Queue one run of ``job`` in ``conn``'s transaction; the dispatch id."""
    now = time.time()
    req = build_request(
        now,
        job,
        payload,
        priority=priority,
        not_before=not_before,
        delay=delay,
        expires_at=expires_at,
        expires_in=expires_in,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        capabilities=capabilities,
        owner=owner,
    )
    req = plain_payload(req)
    row = await job_in(conn, req.job, schema=schema)
    if row is None:
        raise NotFound(f"no job named {req.job!r}")
    new = new_dispatch(row, req, now, where="")
    got = (await insert_in(conn, InsertDispatches([new], origin(), now), schema=schema))[0]
    if got is None:  # only a scheduled slot can be taken; enqueue_in makes none
        raise Conflict(f"job {req.job!r}: the dispatch was not inserted")
    return got if isinstance(got, int) else int(got[0])
