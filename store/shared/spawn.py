"""Engine-neutral rules of ``SpawnMessage`` (store/ops/spawn.py): the spawned job's
name, the error of a taken name, the spawn dispatch, the message's metadata once
delivered and the rows ``failed_spawns`` answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from shepherd.store.ops import NewDispatch
from shepherd.store.ops.spawn import SpawnMessage

__all__ = ["failed_row", "name_taken", "spawn_dispatch", "spawned_metadata", "spawned_spec"]


def spawned_spec(spec: bytes, message_id: int) -> tuple[str, dict[str, Any]]:
    """The job's name (``{id}`` replaced by the message id) and its decoded spec, which
    carries that name."""
    decoded: dict[str, Any] = msgspec.json.decode(spec)
    name = str(decoded["name"]).replace("{id}", str(message_id))
    decoded["name"] = name
    return name, decoded


def name_taken(name: str) -> str:
    """The message's ``last_error`` when a job of that name exists."""
    return f"name: a job named {name!r} exists"


def spawn_dispatch(op: SpawnMessage, job_id: int, name: str) -> NewDispatch:
    """The ``spawn`` dispatch of the one-shot job; its slot is the one-shot's fire time,
    so the scheduler ends the job after it."""
    return NewDispatch(
        job_id=job_id, job_name=name, kind="spawn", priority=op.priority,
        not_before=op.now, max_attempts=op.max_attempts, expires_at=op.expires_at,
        slot=op.now,
    )  # fmt: skip


def spawned_metadata(metadata: bytes | None, name: str, job_id: int, dispatch_id: int) -> bytes:
    """The delivered message's metadata: what it had, plus ``spawned`` (job, job id,
    dispatch id)."""
    meta: dict[str, Any] = msgspec.json.decode(metadata) if metadata else {}
    meta["spawned"] = {"job": name, "job_id": job_id, "dispatch_id": dispatch_id}
    return msgspec.json.encode(meta)


def failed_row(r: Sequence[Any]) -> dict[str, Any]:
    """A row of (id, from_agent, created_at, last_error) as ``failed_spawns`` lists it."""
    return {"id": r[0], "from": r[1], "created_at": r[2], "error": r[3]}
