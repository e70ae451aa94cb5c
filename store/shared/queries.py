"""The engine-neutral half of the core reads (jobs, dispatches, runs): column lists, row
decoders and the keyset page filter, shared by ``store.sqlite.queries`` and
``store.postgres.queries``.

Both engines store the same columns with the same encodings (epoch-second floats,
priority ranks, JSON bodies as bytes, 0/1 flags), and both drivers' rows index like
tuples, so one decoder serves either. The page filter builds its ``WHERE`` clause with
the placeholders of the engine at hand (``qmark``: SQLite's ``?``; ``numbered``:
PostgreSQL's ``$1, $2 …``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from shepherd.store.models import PRIORITIES, Dispatch, JobRow, JobSpec, Run, _dec_hook

__all__ = [
    "DISPATCH_COLUMNS",
    "JOB_COLUMNS",
    "RUN_COLUMNS",
    "Mark",
    "decode_json",
    "dispatch_from_row",
    "job_from_row",
    "numbered",
    "page_filter",
    "qmark",
    "rank",
    "run_from_row",
]

Mark = Callable[[int], str]
"""The placeholder of the n-th (1-based) bound value of a statement."""


def qmark(n: int) -> str:
    """SQLite's placeholder: ``?`` whatever the position."""
    return "?"


def numbered(n: int) -> str:
    """PostgreSQL's placeholder: ``$n``."""
    return f"${n}"


_spec_decoder = msgspec.json.Decoder(JobSpec, dec_hook=_dec_hook)

DISPATCH_COLUMNS = (
    "id, seq, job_id, job_name, kind, status, priority, not_before, expires_at, attempt,"
    " max_attempts, payload, idempotency_key, slot, parent_run_id, created_at, updated_at,"
    " outcome, dead_reason, last_error, current_run_id, result,"
    " needs, owner, agent, wait_reason, assigned_at"
)
RUN_COLUMNS = (
    "id, dispatch_id, job_id, job_name, attempt, status, started_at, finished_at,"
    " heartbeat_at, error, result, idempotency_key, reason, exit_code, signal, timed_out,"
    " stdout, stderr, details, pgid, process, agent"
)
JOB_COLUMNS = (
    "id, spec, next_run_at, last_run_at, last_status, consecutive_errors, created_at, updated_at,"
    " anchor"
)


def decode_json(blob: bytes | None) -> Any:
    return None if blob is None else msgspec.json.decode(blob)


def dispatch_from_row(r: Sequence[Any]) -> Dispatch:
    """A ``Dispatch`` from a row of ``DISPATCH_COLUMNS``."""
    return Dispatch(
        id=r[0],
        seq=r[1],
        job_id=r[2],
        job_name=r[3],
        kind=r[4],
        status=r[5],
        priority=PRIORITIES[r[6]],
        not_before=r[7],
        expires_at=r[8],
        attempt=r[9],
        max_attempts=r[10],
        payload=decode_json(r[11]),
        idempotency_key=r[12],
        slot=r[13],
        parent_run_id=r[14],
        created_at=r[15],
        updated_at=r[16],
        outcome=r[17],
        dead_reason=r[18],
        last_error=r[19],
        current_run_id=r[20],
        result=decode_json(r[21]),
        needs=r[22].split(",") if r[22] else [],
        owner=r[23],
        agent=r[24],
        wait_reason=r[25],
        assigned_at=r[26],
    )


def run_from_row(r: Sequence[Any]) -> Run:
    """A ``Run`` from a row of ``RUN_COLUMNS``."""
    return Run(
        id=r[0],
        dispatch_id=r[1],
        job_id=r[2],
        job_name=r[3],
        attempt=r[4],
        status=r[5],
        started_at=r[6],
        finished_at=r[7],
        heartbeat_at=r[8],
        error=r[9],
        result=decode_json(r[10]),
        idempotency_key=r[11],
        reason=r[12],
        exit_code=r[13],
        signal=r[14],
        timed_out=bool(r[15]),
        stdout=r[16],
        stderr=r[17],
        details=decode_json(r[18]),
        pgid=r[19],
        process=r[20],
        agent=r[21],
    )


def job_from_row(r: Sequence[Any]) -> JobRow:
    """A ``JobRow`` from a row of ``JOB_COLUMNS``."""
    return JobRow(
        id=r[0],
        spec=_spec_decoder.decode(r[1]),
        next_run_at=r[2],
        last_run_at=r[3],
        last_status=r[4],
        consecutive_errors=r[5],
        created_at=r[6],
        updated_at=r[7],
        anchor=r[8],
    )


def rank(priority: str) -> int:
    """A priority's rank, -1 for a name that is none (a filter that matches nothing)."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else -1


def page_filter(
    mark: Mark,
    equal: dict[str, Any],
    *,
    status: str | Sequence[str] | None,
    before: int | None,
    column: str,
    since: float | None,
    until: float | None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause of a keyset page and its values: ``name = value`` for each
    entry of ``equal`` given a value (None: no filter), a status set, ``id < before``
    (the next page starts below the last id seen, never an OFFSET) and
    ``since <= column < until``."""
    parts: list[str] = []
    args: list[Any] = []

    def bind(value: Any) -> str:
        args.append(value)
        return mark(len(args))

    for name, value in equal.items():
        if value is not None:
            parts.append(f"{name} = {bind(value)}")
    statuses = [status] if isinstance(status, str) else list(status or ())
    if len(statuses) == 1:  # ``=``: SQLite uses a partial index (runs_running) only for it
        parts.append(f"status = {bind(statuses[0])}")
    elif statuses:
        parts.append(f"status IN ({','.join(bind(s) for s in statuses)})")
    for cond, value in (("id <", before), (f"{column} >=", since), (f"{column} <", until)):
        if value is not None:
            parts.append(f"{cond} {bind(value)}")
    return (f"WHERE {' AND '.join(parts)}" if parts else ""), args
