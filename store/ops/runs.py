"""Write ops on runs without claiming them: crash recovery, the process group a run
started, heartbeats, and the runtime's status snapshot."""

from __future__ import annotations

import msgspec

from shepherd.store.ops.messages import DeadLetterAlert

__all__ = [
    "Heartbeats",
    "RecordProcess",
    "RecoverOrphans",
    "SaveStatus",
]


class RecoverOrphans(msgspec.Struct, frozen=True, tag=True):
    """Runs left ``running`` by a dead process → ``crashed``; at-least-once dispatches
    are requeued for exactly one replay, at-most-once ones dead-lettered (``crashed``).
    ``processes`` is what the caller found of the runs' recorded process groups before
    (``gone`` / ``killed`` / ``alive``), stored in ``runs.process``.
    Returns ``list[tuple[run_id, dispatch_id, action]]``."""

    now: float
    origin: str
    processes: dict[int, str] = msgspec.field(default_factory=dict)
    alert: DeadLetterAlert | None = None  # a dead letter's alert delivery, same transaction
    # None: every running run. A list (a database shared by several nodes): the runs
    # claimed by these nodes (``runs.instance``) or by no live node (dead, left, unknown);
    # a live node's runs are its own, an expired one's are the rescue's. An engine of one
    # runtime (SQLite) recovers every running run either way: no other node is alive.
    nodes: list[str] | None = None


class RecordProcess(msgspec.Struct, frozen=True, tag=True):
    """The process group a running run has started (``actors.executors.procs``), so
    crash recovery can find it again. Returns whether the run was still running."""

    run_id: int
    pgid: int
    start: int  # the leader's start time, counted as ``clock`` says
    clock: str


class Heartbeats(msgspec.Struct, frozen=True, tag=True):
    """Stamp ``heartbeat_at`` on running runs, many per commit."""

    items: list[tuple[int, float]]


class SaveStatus(msgspec.Struct, frozen=True, tag=True):
    """The runtime's health snapshot, for ``status`` in other processes."""

    instance: str
    pid: int
    started_at: float
    now: float
    status: bytes
    stopped: bool = False
