"""The engine-neutral half of firing chain children (rules: ``store.chains``; README
"Chains"), shared by ``store.sqlite.chains`` and ``store.postgres.chains``: given a
parent's final run and its children's rows, which children get a ``chain`` dispatch
and which a ``skipped`` run saying why (fan-out cap, full backlog). No SQL here: each
engine reads the rows and writes the results around ``plan_children``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from shepherd.store import chains, keys
from shepherd.store.models import encode_json, priority_rank
from shepherd.store.ops import FinishRun, NewDispatch

__all__ = ["BACKLOG_STATUSES", "PARENT_RUN_COLUMNS", "SKIP_COLUMNS", "new_chain", "plan_children"]

BACKLOG_STATUSES = ("queued", "running", "awaiting_approval")  # a child's backlog

# the parent run's row ``plan_children`` reads (``r``: runs, ``p``: its job)
PARENT_RUN_COLUMNS = (
    "r.job_id, r.job_name, r.dispatch_id, r.status, r.exit_code, r.signal,"
    " r.timed_out, r.error, r.stdout, r.stderr, r.result, r.details, p.spec"
)
# the columns of each skipped run's values (the run also has dispatch_id NULL,
# attempt 0, status 'skipped')
SKIP_COLUMNS = "job_id, job_name, started_at, finished_at, reason, error, details"


def plan_children(
    f: FinishRun,
    run: Sequence[Any],
    children: Sequence[Sequence[Any]],
    backlog: Callable[[int], int],
    now: float,
    rows: list[NewDispatch],
    skips: list[tuple[Any, ...]],
    planned: Counter[int],
) -> None:
    """Add to ``rows`` the chain dispatches of final ``f`` (``run``: its row of
    ``PARENT_RUN_COLUMNS``) and to ``skips`` the values (``SKIP_COLUMNS``) of the
    children it does not fire. ``children``: the parent's children as ``(id, name,
    spec, enabled)`` in id order; ``backlog(child_id)``: that child's stored backlog;
    ``planned`` counts the rows of this op per child, not inserted yet."""
    (_job_id, job_name, dispatch_id, status, exit_code, signal, timed_out, error, stdout,
     stderr, result, details, parent_spec) = run  # fmt: skip
    ok = f.next == "done" and status == "ok"
    fanout = int(msgspec.json.decode(parent_spec).get("max_fanout", 25))
    candidates: list[tuple[int, str, dict[str, Any]]] = []
    for cid, cname, cspec, enabled in children:
        spec = msgspec.json.decode(cspec)
        if enabled and chains.fires(spec.get("trigger_on"), ok):
            candidates.append((int(cid), str(cname), spec))
    why = {"parent_run_id": f.run_id, "parent_job": job_name}
    for cid, cname, _spec in candidates[fanout:]:
        error_text = f"fan-out cap of {job_name!r} ({fanout}) reached"
        skips.append((cid, cname, now, now, "chain-fanout", error_text, encode_json(why)))
    if not candidates[:fanout]:
        return
    decoded = msgspec.json.decode(result) if result is not None else None
    content = chains.output_text(stdout, decoded)
    ctx = chains.trigger_context(
        parent_job=str(job_name),
        parent_run_id=f.run_id,
        dispatch_id=int(dispatch_id) if dispatch_id is not None else 0,
        status=str(status),
        exit_code=exit_code,
        signal=signal,
        timed_out=bool(timed_out),
        error=error,
        stdout=stdout,
        stderr=stderr,
        result=decoded,
        details=msgspec.json.decode(details) if details is not None else None,
    )
    for cid, cname, spec in candidates[:fanout]:
        if not chains.condition_matches(spec.get("trigger_condition"), content):
            continue
        queued = backlog(cid) + planned[cid]
        limit = int(spec.get("max_queued", 25))
        if queued >= limit:
            error_text = f"backlog of {cname!r} is full ({queued} >= max_queued {limit})"
            skips.append((cid, cname, now, now, "chain-backlog", error_text, encode_json(why)))
            continue
        rows.append(new_chain(cid, cname, spec, ctx, f.run_id, now))
        planned[cid] += 1


def new_chain(
    child_id: int,
    child: str,
    spec: dict[str, Any],
    ctx: dict[str, Any],
    parent_run_id: int,
    now: float,
) -> NewDispatch:
    """The chain dispatch of ``child`` for the parent run ``parent_run_id`` (its system
    key binds it to that pair: a second insert is a no-op)."""
    payload = {**(spec.get("payload") or {}), "trigger": ctx}
    expires_in = spec.get("expires_in")
    retry = spec.get("retry") or {}
    return NewDispatch(
        job_id=child_id,
        job_name=child,
        kind="chain",
        priority=priority_rank(spec.get("priority", "normal")),
        not_before=now + float(spec.get("trigger_delay") or 0.0),
        max_attempts=int(retry.get("max_attempts", 3)),
        expires_at=now + float(expires_in) if expires_in is not None else None,
        payload=encode_json(payload),
        idempotency_key=keys.chain_key(parent_run_id, child_id),
        parent_run_id=parent_run_id,
    )
