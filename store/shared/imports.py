"""Engine-neutral rules of ``ImportBatch`` (store/ops/imports.py), shared by
``store.sqlite.imports`` and ``store.postgres.imports``: the ``import_map`` decoded,
each item's status (created, updated, unchanged), each job's final name, the spec a
job is written with, and when a stored next fire time is kept. No SQL here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from shepherd.store.ops.imports import ImportBatch, ImportJob

__all__ = [
    "SCHEDULE",
    "Mapped",
    "decode_map",
    "item_status",
    "job_spec",
    "keeps_stored_fire",
    "resolve_jobs",
]

SCHEDULE = ("cron", "tz", "at", "every")  # the spec fields a job's schedule is made of
# (kind, source id) -> (target id, digest as last imported)
Mapped = dict[tuple[str, str], tuple[str, str]]


def decode_map(rows: Iterable[Any]) -> Mapped:
    """``Mapped`` from ``import_map`` rows (kind, source_id, target_id, digest)."""
    return {(str(r[0]), str(r[1])): (str(r[2]), str(r[3] or "")) for r in rows}


def item_status(mapped: Mapped, kind: str, source_id: str, digest: str) -> str:
    known = mapped.get((kind, source_id))
    if known is None:
        return "created"
    return "unchanged" if known[1] == digest else "updated"


def resolve_jobs(
    op: ImportBatch, mapped: Mapped, taken: Mapping[str, int]
) -> tuple[dict[str, str], dict[str, str]]:
    """Each job's final name and status (``taken``: every stored job's name → id). A
    mapped job keeps its stored name; a new one its wanted name unless another job
    holds it (then ``<name>-<source id[:8]>``)."""
    by_id = {v: k for k, v in taken.items()}
    names: dict[str, str] = {}
    statuses: dict[str, str] = {}
    for job in op.jobs:  # first the mapped jobs: they keep their stored names
        target = mapped.get(("job", job.source_id))
        stored = by_id.get(int(target[0])) if target is not None else None
        if stored is not None and target is not None:
            names[job.source_id] = stored
            statuses[job.source_id] = "unchanged" if target[1] == job.digest else "updated"
    used = set(names.values())
    for job in op.jobs:  # then the new ones, around every name already taken
        if job.source_id in names:
            continue
        name, k = job.name, 1
        while name in used or name in taken:
            suffix = f"-{job.source_id[:8]}" + (f"-{k}" if k > 1 else "")
            name, k = job.name[: 200 - len(suffix)] + suffix, k + 1
        names[job.source_id] = name
        statuses[job.source_id] = "created"
        used.add(name)
    return names, statuses


def job_spec(job: ImportJob, name: str, names: Mapping[str, str]) -> dict[str, Any]:
    """The spec ``job`` is written with: its final name, its parent's final name."""
    spec: dict[str, Any] = msgspec.json.decode(job.spec)
    spec["name"] = name
    if job.parent_source is not None and job.parent_source in names:
        spec["parent"] = names[job.parent_source]
    return spec


def keeps_stored_fire(
    stored_spec: bytes, stored_next: float | None, spec: Mapping[str, Any], nxt: float | None
) -> bool:
    """Whether a job updated by an import keeps its stored next fire time: shepherd is
    there or ahead of the imported one and the schedule did not change (the slots
    before it are recorded: a slot already run is never run again)."""
    if stored_next is None or nxt is None or stored_next < nxt:
        return False
    old = msgspec.json.decode(stored_spec)
    return all(old.get(k) == spec.get(k) for k in SCHEDULE)
